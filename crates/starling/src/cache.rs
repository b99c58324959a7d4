//! Binary caches of a job's parsed input (`data.cache_dir`): the text is parsed and hashed once,
//! and `starling train` passes, later runs and `starling tune` trials read the cache instead.
//! The format is `starling_data::cache`'s; this module decides when a cache can be reused.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use starling_core::Example;
use starling_data::cache::{cache_status, CacheHeader, CacheStatus, CacheWriter};
use starling_data::{expand_inputs, DataError};

use crate::config::JobConfig;
use crate::input::{InputError, Inputs};

/// The whole input: `(rank, world)` of a cache that holds every example.
pub const WHOLE: (usize, usize) = (0, 1);

/// The cache of `paths` in `dir` for `job` (input settings resolved), built if it is missing or
/// was made from other input or settings; returns its path and the text examples parsed now.
/// `share` is the `(rank, world)` slice of the text it holds: [`WHOLE`], or a cluster worker's.
pub fn ensure(
    job: &JobConfig,
    paths: &[PathBuf],
    dir: &Path,
    role: &str,
    share: (usize, usize),
) -> Result<(PathBuf, u64), InputError> {
    let data = InputError::Data;
    std::fs::create_dir_all(dir).map_err(|source| InputError::Cache { path: dir.to_path_buf(), source })?;
    let fingerprint = fingerprint(job, paths, share).map_err(data)?;
    let hash = starling_core::hash::hash_token(0, fingerprint.as_bytes());
    let path = match share {
        WHOLE => dir.join(format!("{role}-{hash:016x}.cache")),
        (rank, world) => dir.join(format!("{role}-{rank}of{world}-{hash:016x}.cache")),
    };
    match cache_status(&path, &fingerprint).map_err(data)? {
        CacheStatus::Ready(_) => return Ok((path, 0)),
        CacheStatus::Stale(why) => crate::errln!("rebuilding the {role} cache: {why}"),
        CacheStatus::Missing => {}
    }
    // Keys stay unfolded in the cache, so trials may differ in hash_bits.
    let mut parse_job = job.clone();
    parse_job.features.hash_bits = 0;
    // Split as the reader of `share` splits the text, so the slice is the one it would read.
    let inputs = Inputs::open(&mut parse_job, paths, share.1)?;
    let mut reader = inputs.source_reader(share.0, share.1);
    let header = CacheHeader {
        fingerprint,
        num_fields: inputs.num_fields() as u32,
        field_names: Vec::new(),
        source: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
    };
    let write_err = |source| InputError::Cache { path: path.clone(), source };
    let mut writer = CacheWriter::create(&path, &header).map_err(write_err)?;
    let mut ex = Example::default();
    while reader.next(&mut ex).map_err(data)? {
        writer.push(&ex).map_err(write_err)?;
    }
    writer.commit().map_err(write_err)?;
    if let Some(r) = inputs.bad_lines_report() {
        crate::errln!("{role} input: {r}");
    }
    Ok((path, reader.examples_read()))
}

/// What the cache of `paths` depends on: every file's path, size and modification time, the
/// feature settings (with `hash_bits`, which is applied when reading, left out) and the share.
fn fingerprint(job: &JobConfig, paths: &[PathBuf], share: (usize, usize)) -> Result<String, DataError> {
    let mut files = Vec::new();
    for f in expand_inputs(paths)? {
        let meta = std::fs::metadata(&f).map_err(|e| DataError::io(&f, e))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let abs = std::fs::canonicalize(&f).unwrap_or(f);
        files.push(serde_json::json!([abs, meta.len(), mtime.to_string()]));
    }
    let mut features = job.features.clone();
    features.hash_bits = 0;
    let doc = serde_json::json!({ "files": files, "features": features, "loss": job.model.loss, "share": share });
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_data::Format;

    fn examples(mut next: impl FnMut(&mut Example) -> bool) -> Vec<(u32, Vec<u64>)> {
        let (mut out, mut ex) = (Vec::new(), Example::default());
        while next(&mut ex) {
            out.push((ex.label.to_bits(), ex.features.iter().map(|f| f.key).collect()));
        }
        out
    }

    #[test]
    fn a_workers_slice_cache_holds_exactly_the_text_slice_it_would_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.libsvm");
        let text: String = (0..3000).map(|i| format!("{} {}:1 {}:0.5\n", i % 2, i, i * 7 + 1)).collect();
        std::fs::write(&file, text).unwrap();
        let mut job = JobConfig::default();
        job.features.format = Format::Libsvm;
        job.features.hash_bits = 16;
        let paths = vec![file];
        let mut total = 0;
        for rank in 0..2 {
            let mut inputs = Inputs::open(&mut job, &paths, 2).unwrap();
            let mut from_text = inputs.source_reader(rank, 2);
            let want = examples(|ex| from_text.next(ex).unwrap());
            let (path, parsed) = ensure(&job, &paths, &dir.path().join("cache"), "train", (rank, 2)).unwrap();
            assert_eq!(parsed, want.len() as u64);
            inputs.use_cache(path, 16, (rank, 2));
            let mut from_cache = inputs.reader(rank, 2).unwrap();
            let got = examples(|ex| from_cache.next(ex).unwrap());
            assert_eq!(got, want, "rank {rank}");
            total += got.len();
        }
        assert_eq!(total, 3000);
    }
}
