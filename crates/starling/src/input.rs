//! Opening a job's input: the files, their splits for threads, and the feature pipeline, resolved
//! once per job so every thread (and the saved model) featurizes input the same way.

use std::path::PathBuf;
use std::sync::Arc;

use starling_core::Loss;
use starling_data::{assign_splits, expand_inputs, make_splits, BadLines, DataError, ExampleReader, Pipeline, Split};

use crate::config::JobConfig;

/// A reader of examples for one thread.
pub type Reader = ExampleReader;

/// Why reading input (or writing predictions) failed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Finding, opening or parsing input failed; the message names file, line and column.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Output(String),
}

/// A job's input, ready to hand out per-thread readers.
pub struct Inputs {
    splits: Vec<Split>,
    pipeline: Pipeline,
    bad: Arc<BadLines>,
}

impl Inputs {
    /// Opens `paths` for `job`, resolving `format = "auto"` and libFFM's field count into
    /// `job.features`, so the model records how its input was read.
    pub fn open(job: &mut JobConfig, paths: &[PathBuf], threads: usize) -> Result<Self, InputError> {
        job.features.binary_labels = job.model.loss == Loss::Logistic;
        let files = expand_inputs(paths)?;
        let pipeline = Pipeline::from_files(&job.features, &files)?;
        job.features = pipeline.config().clone();
        Ok(Inputs {
            splits: make_splits(&files, threads.max(1))?,
            bad: BadLines::new(job.features.max_bad_lines),
            pipeline,
        })
    }

    /// Fields the pipeline produces (FFM sizes its rows by it).
    pub fn num_fields(&self) -> usize {
        self.pipeline.num_fields()
    }

    /// The reader of thread `rank` of `world`: its share of the splits, in input order.
    pub fn reader(&self, rank: usize, world: usize) -> Reader {
        ExampleReader::new(assign_splits(&self.splits, rank, world), self.pipeline.clone(), self.bad.clone())
    }

    /// Malformed lines skipped so far, and the first messages.
    pub fn bad_lines(&self) -> (u64, Vec<String>) {
        (self.bad.count(), self.bad.messages())
    }

    /// The end-of-run report of skipped lines, `None` when none was skipped.
    pub fn bad_lines_report(&self) -> Option<String> {
        self.bad.report()
    }
}
