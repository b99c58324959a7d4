//! The binary caches a search trains from: the job's training and holdout input parsed once,
//! reused by every trial and by later searches over the same input.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use starling_core::Example;
use starling_data::cache::{cache_status, CacheHeader, CacheReader, CacheStatus, CacheWriter};
use starling_data::{expand_inputs, DataError};

use crate::config::JobConfig;
use crate::input::{InputError, Inputs};

use super::TuneError;

/// The caches of a job's input, ready for trials.
#[derive(Debug)]
pub struct Prepared {
    /// Training examples.
    pub train: PathBuf,
    /// Holdout examples.
    pub test: PathBuf,
    /// Training examples per pass.
    pub rows: u64,
    /// Holdout examples.
    pub test_rows: u64,
    /// Fields of the pipeline (FFM sizes its rows by it).
    pub num_fields: usize,
    /// Text examples parsed now: 0 when both caches were reused.
    pub parsed: u64,
    /// Both caches existed and matched the input.
    pub reused: bool,
    /// The job with its input settings resolved (format, fields), as trials and models record it.
    pub job: JobConfig,
}

/// Makes sure `dir` holds caches of `job`'s training and holdout input, parsing the text only
/// when a cache is missing or was made from other input or settings.
pub fn prepare(job: &JobConfig, dir: &Path) -> Result<Prepared, TuneError> {
    std::fs::create_dir_all(dir).map_err(|source| TuneError::Write { path: dir.to_path_buf(), source })?;
    // Resolves `format = "auto"` and libFFM's field count, as `starling train` does.
    let mut resolved = job.clone();
    Inputs::open(&mut resolved, &job.data.train, 1)?;
    let job = &resolved;
    let (train, train_parsed) = ensure(job, &job.data.train, dir, "train")?;
    let (test, test_parsed) = ensure(job, &job.data.test, dir, "test")?;
    let open = |p: &Path| CacheReader::open(p, 0).map_err(|e| TuneError::Input(InputError::Data(e)));
    let (train_reader, test_reader) = (open(&train)?, open(&test)?);
    Ok(Prepared {
        rows: train_reader.totals().examples,
        test_rows: test_reader.totals().examples,
        num_fields: train_reader.header().num_fields as usize,
        train,
        test,
        parsed: train_parsed + test_parsed,
        reused: train_parsed + test_parsed == 0,
        job: resolved,
    })
}

/// The cache of `paths` in `dir`, built if needed; returns its path and the examples parsed.
fn ensure(job: &JobConfig, paths: &[PathBuf], dir: &Path, role: &str) -> Result<(PathBuf, u64), TuneError> {
    let data = |e: DataError| TuneError::Input(InputError::Data(e));
    let fingerprint = fingerprint(job, paths).map_err(data)?;
    let path = dir.join(format!("{role}-{:016x}.cache", starling_core::hash::hash_token(0, fingerprint.as_bytes())));
    match cache_status(&path, &fingerprint).map_err(data)? {
        CacheStatus::Ready(_) => return Ok((path, 0)),
        CacheStatus::Stale(why) => eprintln!("tune: rebuilding the {role} cache: {why}"),
        CacheStatus::Missing => {}
    }
    // Keys stay unfolded in the cache, so trials may differ in hash_bits.
    let mut parse_job = job.clone();
    parse_job.features.hash_bits = 0;
    let inputs = Inputs::open(&mut parse_job, paths, 1)?;
    let mut reader = inputs.reader(0, 1);
    let header = CacheHeader {
        fingerprint,
        num_fields: inputs.num_fields() as u32,
        field_names: Vec::new(),
        source: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
    };
    let write_err = |source| TuneError::Write { path: path.clone(), source };
    let mut writer = CacheWriter::create(&path, &header).map_err(write_err)?;
    let mut ex = Example::default();
    while reader.next(&mut ex).map_err(data)? {
        writer.push(&ex).map_err(write_err)?;
    }
    writer.commit().map_err(write_err)?;
    if let Some(r) = inputs.bad_lines_report() {
        eprintln!("tune: {role} input: {r}");
    }
    Ok((path, reader.examples_read()))
}

/// What the cache of `paths` depends on: every file's path, size and modification time, and the
/// feature settings (with `hash_bits`, which is applied when reading, left out).
fn fingerprint(job: &JobConfig, paths: &[PathBuf]) -> Result<String, DataError> {
    let mut files = Vec::new();
    for f in expand_inputs(paths)? {
        let meta = std::fs::metadata(&f).map_err(|e| DataError::io(&f, e))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let abs = std::fs::canonicalize(&f).unwrap_or(f);
        files.push(serde_json::json!([abs, meta.len(), mtime.to_string()]));
    }
    let mut features = job.features.clone();
    features.hash_bits = 0;
    let doc = serde_json::json!({ "files": files, "features": features, "loss": job.model.loss });
    Ok(doc.to_string())
}
