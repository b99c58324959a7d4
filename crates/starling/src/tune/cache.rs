//! The binary caches a search trains from: the job's training and holdout input parsed once,
//! reused by every trial and by later searches over the same input.

use std::path::{Path, PathBuf};

use starling_data::cache::CacheReader;

use starling_core::graph::Fields;

use crate::cache::{ensure, WHOLE};
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
    /// Fields of the pipeline (FFM sizes its rows by it; graphs are built over them).
    pub fields: Fields,
    /// Text examples parsed now: 0 when both caches were reused.
    pub parsed: u64,
    /// Both caches existed and matched the input.
    pub reused: bool,
    /// The job with its input settings resolved (format, fields), as trials and models record it.
    pub job: JobConfig,
}

/// `job` with `format = "auto"` and libFFM's field count resolved from its training input, as
/// `starling train` resolves them, and the fields that input has.
pub fn resolve(job: &JobConfig) -> Result<(JobConfig, Fields), TuneError> {
    let mut resolved = job.clone();
    let inputs = Inputs::open(&mut resolved, &job.data.train, 1)?;
    Ok((resolved, inputs.fields()))
}

/// Makes sure `dir` holds caches of `job`'s training and holdout input, parsing the text only
/// when a cache is missing or was made from other input or settings.
pub fn prepare(job: &JobConfig, dir: &Path) -> Result<Prepared, TuneError> {
    let (resolved, fields) = resolve(job)?;
    let job = &resolved;
    let (train, train_parsed) = ensure(job, &job.data.train, dir, "train", WHOLE)?;
    let (test, test_parsed) = ensure(job, &job.data.test, dir, "test", WHOLE)?;
    let open = |p: &Path| CacheReader::open(p, 0).map_err(|e| TuneError::Input(InputError::Data(e)));
    let (train_reader, test_reader) = (open(&train)?, open(&test)?);
    // A search over no examples, or ranked on none, would crown a meaningless winner.
    for (reader, what, paths) in
        [(&train_reader, "the training input", &job.data.train), (&test_reader, "the holdout", &job.data.test)]
    {
        if reader.totals().examples == 0 {
            let what = format!("{what} {}", crate::input::show_paths(paths));
            return Err(TuneError::Input(InputError::Empty(what)));
        }
    }
    Ok(Prepared {
        rows: train_reader.totals().examples,
        test_rows: test_reader.totals().examples,
        fields,
        train,
        test,
        parsed: train_parsed + test_parsed,
        reused: train_parsed + test_parsed == 0,
        job: resolved,
    })
}
