//! [`ExampleReader`]: examples from a list of splits through a [`Pipeline`], with a bad-line
//! policy ([`BadLines`]) that several reader threads share.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use starling_core::Example;

use crate::error::DataError;
use crate::input::{read_header, LineSource, Split};
use crate::pipeline::{Format, Pipeline};

/// How many bad-line messages are kept for the end-of-run report.
pub const KEEP_BAD_LINE_MESSAGES: usize = 10;

/// The bad-line budget and record, shared (`Arc`) by every reader of a job.
///
/// With `limit = 0` the first malformed line is an error. With `limit = N > 0` malformed lines are
/// skipped and counted; the `N + 1`-th is an error ([`DataError::TooManyBadLines`]). The first
/// [`KEEP_BAD_LINE_MESSAGES`] messages are kept for the report.
#[derive(Debug)]
pub struct BadLines {
    limit: u64,
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl BadLines {
    /// A shared record allowing `limit` bad lines.
    pub fn new(limit: u64) -> Arc<BadLines> {
        Arc::new(BadLines { limit, count: AtomicU64::new(0), first: Mutex::new(Vec::new()) })
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bad lines seen so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first messages kept (at most [`KEEP_BAD_LINE_MESSAGES`]).
    pub fn messages(&self) -> Vec<String> {
        self.first.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A short end-of-run report, `None` when no line was bad.
    pub fn report(&self) -> Option<String> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let mut s =
            format!("skipped {n} malformed line{} (max_bad_lines = {})", if n == 1 { "" } else { "s" }, self.limit);
        let msgs = self.messages();
        for m in &msgs {
            s.push_str("\n  ");
            s.push_str(m);
        }
        if n > msgs.len() as u64 {
            s.push_str(&format!("\n  ... and {} more", n - msgs.len() as u64));
        }
        Some(s)
    }

    /// Counts one bad line: `Ok` to skip it, `Err` when the limit is exceeded.
    pub fn record(&self, err: DataError) -> Result<(), DataError> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit == 0 {
            return Err(err);
        }
        if n > self.limit {
            return Err(DataError::TooManyBadLines { limit: self.limit, last: Box::new(err) });
        }
        if n <= KEEP_BAD_LINE_MESSAGES as u64 {
            if let Ok(mut v) = self.first.lock() {
                v.push(err.to_string());
            }
        }
        Ok(())
    }
}

/// Reads examples from splits, in order, through a pipeline.
///
/// Each thread or worker has its own reader (with its own pipeline clone) over its own splits;
/// they share one [`BadLines`].
pub struct ExampleReader {
    splits: Vec<Split>,
    next_split: usize,
    pipeline: Pipeline,
    bad: Arc<BadLines>,
    src: Option<LineSource>,
    /// CSV: the file whose header the pipeline is mapped to.
    header_of: Option<PathBuf>,
    examples: u64,
}

impl ExampleReader {
    /// A reader of `splits` (in order) through `pipeline`, counting bad lines in `bad`.
    pub fn new(splits: Vec<Split>, pipeline: Pipeline, bad: Arc<BadLines>) -> ExampleReader {
        ExampleReader { splits, next_split: 0, pipeline, bad, src: None, header_of: None, examples: 0 }
    }

    /// The pipeline (for `num_fields`, `field_names`).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The shared bad-line record.
    pub fn bad_lines(&self) -> &Arc<BadLines> {
        &self.bad
    }

    /// Examples returned so far.
    pub fn examples_read(&self) -> u64 {
        self.examples
    }

    /// Starts reading again from the first split (for another epoch).
    pub fn rewind(&mut self) {
        self.next_split = 0;
        self.src = None;
    }

    /// Opens the next split; false when none is left.
    fn open_next(&mut self) -> Result<bool, DataError> {
        let Some(split) = self.splits.get(self.next_split) else { return Ok(false) };
        self.next_split += 1;
        let csv = self.pipeline.format() == Format::Csv;
        if csv && self.header_of.as_deref() != Some(split.path.as_path()) {
            let header = read_header(&split.path)?;
            self.pipeline
                .set_csv_header(&header)
                .map_err(|message| DataError::Header { path: split.path.clone(), message })?;
            self.header_of = Some(split.path.clone());
        }
        self.src = Some(LineSource::open(split, csv)?);
        Ok(true)
    }

    /// Reads the next example into `ex` (reusing its allocation); `Ok(false)` at the end of the
    /// last split. Malformed lines are skipped or reported as [`BadLines`] decides.
    pub fn next(&mut self, ex: &mut Example) -> Result<bool, DataError> {
        loop {
            let Some(src) = self.src.as_mut() else {
                if !self.open_next()? {
                    return Ok(false);
                }
                continue;
            };
            let Some(line) = src.next_line()? else {
                self.src = None;
                continue;
            };
            match self.pipeline.parse_line(line, ex) {
                Ok(true) => {
                    self.examples += 1;
                    return Ok(true);
                }
                Ok(false) => continue,
                Err(e) => {
                    let line = src.line_number()?;
                    let err = DataError::Parse {
                        path: src.path().to_path_buf(),
                        line,
                        column: e.column,
                        expected: e.expected.into_owned(),
                        got: e.got,
                    };
                    ex.clear();
                    self.bad.record(err)?;
                }
            }
        }
    }
}
