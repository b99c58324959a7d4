//! Opening a job's input: the files, their splits for threads, and the feature pipeline, resolved
//! once per job so every thread (and the saved model) featurizes input the same way.

use std::path::PathBuf;
use std::sync::Arc;

use starling_core::{Example, Loss};
use starling_data::arrow::{batch_share, field_list, BatchesReader, RecordBatch};
use starling_data::cache::CacheReader;
use starling_data::parquet::{assign_parquet_splits, parquet_splits, ParquetReader, ParquetSplit};
use starling_data::{
    assign_splits, expand_inputs, make_splits, BadLines, DataError, ExampleReader, Format, Pipeline, Split,
};

use crate::config::JobConfig;

/// Examples [`Inputs::preflight`] reads: enough to meet a bad header or format, cheap next to training.
const PREFLIGHT_EXAMPLES: u32 = 1000;

/// Training examples the statistics of numeric inputs are computed from.
const NUMERIC_STATS_EXAMPLES: u64 = 1_000_000;

/// Input paths for messages: `data/a.tsv, data/b.tsv`.
pub fn show_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A reader of examples for one thread: parsing the text, or decoding the binary cache of it.
// One per thread, called per example: a box would add an indirection to the hot loop.
#[allow(clippy::large_enum_variant)]
pub enum Reader {
    /// Parses text files through the pipeline.
    Text(ExampleReader),
    /// Reads a share of a cache (see [`crate::cache`]).
    Cache(CacheReader),
    /// Reads Parquet row groups through the pipeline.
    Parquet(ParquetReader),
    /// Reads record batches held in memory (Python, Spark).
    Batches(BatchesReader),
}

impl Reader {
    /// Reads the next example into `ex`; `Ok(false)` at the end of this reader's share.
    #[inline]
    pub fn next(&mut self, ex: &mut Example) -> Result<bool, DataError> {
        match self {
            Reader::Text(r) => r.next(ex),
            Reader::Cache(r) => r.next(ex),
            Reader::Parquet(r) => r.next(ex),
            Reader::Batches(r) => r.next(ex),
        }
    }

    /// Examples read so far.
    pub fn examples_read(&self) -> u64 {
        match self {
            Reader::Text(r) => r.examples_read(),
            Reader::Cache(r) => r.examples_read(),
            Reader::Parquet(r) => r.examples_read(),
            Reader::Batches(r) => r.examples_read(),
        }
    }
}

/// Why reading input (or writing predictions) failed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Finding, opening or parsing input failed; the message names file, line and column.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Output(String),
    /// The input holds no examples (or every line was skipped as malformed).
    #[error("{0} holds no examples")]
    Empty(String),
    /// Input read for a saved model failed; the model expects the format it was trained on.
    #[error("{source} (the model reads {format} input, as it was trained on)")]
    ForModel {
        /// The model's input format.
        format: &'static str,
        /// What failed.
        source: Box<InputError>,
    },
    /// The reader of stdout went away (`| head`): not a failure of the job.
    #[error("the output was closed")]
    OutputClosed,
    /// Writing a cache of the input failed.
    #[error("writing the input cache {path}: {source}")]
    Cache {
        /// The cache file or its directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A cache read in place of the text.
struct CacheUse {
    path: PathBuf,
    /// Keys are folded to this many bits on reading.
    hash_bits: u32,
    /// The `(rank, world)` slice of the text the cache holds.
    share: (usize, usize),
}

/// Where the examples of a job's input are: line splits of text files, or Parquet row groups.
enum Splits {
    Text(Vec<Split>),
    Parquet(Vec<ParquetSplit>),
    /// Batches in memory, and which `(rank, world)` slice of the input they hold:
    /// [`crate::cache::WHOLE`], or one process's slice already (a Spark task's partition).
    Batches(Arc<Vec<RecordBatch>>, (usize, usize)),
}

/// What reader `rank` of `world` reads of data holding the `held` slice of an input: its share
/// of the whole, or all of it when it holds exactly that reader's slice.
fn share_of(held: (usize, usize), rank: usize, world: usize) -> (usize, usize) {
    if held == crate::cache::WHOLE {
        return (rank, world);
    }
    assert_eq!(held, (rank, world), "data holding one slice read as another");
    crate::cache::WHOLE
}

/// A job's input, ready to hand out per-thread readers.
pub struct Inputs {
    splits: Splits,
    pipeline: Pipeline,
    bad: Arc<BadLines>,
    /// A cache of these inputs to read instead (see [`Inputs::use_cache`]).
    cache: Option<CacheUse>,
}

impl Inputs {
    /// Opens `paths` for `job`, resolving `format = "auto"` and libFFM's field count into
    /// `job.features`, so the model records how its input was read.
    pub fn open(job: &mut JobConfig, paths: &[PathBuf], threads: usize) -> Result<Self, InputError> {
        job.features.binary_labels = job.model.loss == Loss::Logistic;
        let files = expand_inputs(paths)?;
        let pipeline = Pipeline::from_files(&job.features, &files)?;
        job.features = pipeline.config().clone();
        let splits = match pipeline.format() {
            Format::Parquet => Splits::Parquet(parquet_splits(&files, threads.max(1))?),
            _ => Splits::Text(make_splits(&files, threads.max(1))?),
        };
        Ok(Inputs { splits, bad: BadLines::new(job.features.max_bad_lines), pipeline, cache: None })
    }

    /// Record batches held in memory as `job`'s input, their columns mapped by
    /// `[features.columns]` as Parquet's are; `job.features` records the mapping (format
    /// `parquet`), so the model reads Parquet files of the same columns alike. Without
    /// `labelled` (data to predict) the label column may be missing.
    pub fn from_batches(
        job: &mut JobConfig,
        batches: Arc<Vec<RecordBatch>>,
        labelled: bool,
    ) -> Result<Self, InputError> {
        job.features.binary_labels = job.model.loss == Loss::Logistic;
        job.features.format = Format::Parquet;
        let no_input = || InputError::Data(DataError::NoInput { paths: "(no record batches)".into() });
        let first = batches.first().ok_or_else(no_input)?;
        let fields = field_list(first.schema_ref(), &job.features.columns)
            .map_err(|m| InputError::Data(DataError::Config(m)))?;
        let mut pipeline = Pipeline::with_columns(&job.features, fields)?;
        if !labelled {
            pipeline = pipeline.labels_optional();
        }
        job.features = pipeline.config().clone();
        let bad = BadLines::new(job.features.max_bad_lines);
        Ok(Inputs { splits: Splits::Batches(batches, crate::cache::WHOLE), bad, pipeline, cache: None })
    }

    /// Marks in-memory batches as the whole slice of reader `rank` of `world` (a Spark task's
    /// partition), which that reader then reads in full.
    pub fn whole_slice_of(mut self, rank: usize, world: usize) -> Self {
        if let Splits::Batches(b, _) = self.splits {
            self.splits = Splits::Batches(b, (rank, world));
        }
        self
    }

    /// Fields the pipeline produces (FFM sizes its rows by it).
    pub fn num_fields(&self) -> usize {
        self.pipeline.num_fields()
    }

    /// Fills `job.model.numeric_stats` for every field the model's `numeric` blocks read and
    /// the job has no statistics of, from the first examples of these (training) inputs. A
    /// field's value in an example is the sum of its features' values; examples without the
    /// field do not count. Names that are not fields are left to the model's own refusal.
    pub fn resolve_numeric_stats(&self, job: &mut JobConfig) -> Result<(), InputError> {
        let fields = self.fields();
        let want: Vec<(usize, String)> = job
            .model
            .numeric_fields()
            .into_iter()
            .filter(|name| !job.model.numeric_stats.contains_key(name))
            .filter_map(|name| fields.names.iter().position(|n| *n == name).map(|f| (f, name)))
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        let mut slot = vec![None; fields.names.len()];
        for (i, (f, _)) in want.iter().enumerate() {
            slot[*f] = Some(i);
        }
        let mut moments = vec![starling_core::metrics::Moments::default(); want.len()];
        let (mut sums, mut seen) = (vec![0f64; want.len()], vec![false; want.len()]);
        let mut reader = self.reader(0, 1)?;
        let mut ex = Example::default();
        let mut read = 0;
        while read < NUMERIC_STATS_EXAMPLES && reader.next(&mut ex)? {
            read += 1;
            sums.fill(0.0);
            seen.fill(false);
            for feat in &ex.features {
                if let Some(i) = slot.get(feat.field as usize).copied().flatten() {
                    sums[i] += f64::from(feat.value);
                    seen[i] = true;
                }
            }
            for i in (0..want.len()).filter(|&i| seen[i]) {
                moments[i].add(sums[i]);
            }
        }
        for ((_, name), m) in want.into_iter().zip(moments) {
            let (mean, std) = m.mean_std();
            job.model.numeric_stats.insert(name, [mean, std]);
        }
        Ok(())
    }

    /// The fields the pipeline produces, by name, as a model graph reads them.
    pub fn fields(&self) -> starling_core::graph::Fields {
        starling_core::graph::Fields { names: self.pipeline.field_names(), bias: self.pipeline.bias_field() }
    }

    /// Reads the cache at `path` from now on, folding keys to `hash_bits`. It holds the
    /// `share = (rank, world)` slice of these inputs' text: the whole ([`crate::cache::WHOLE`]),
    /// which threads then split by blocks, or exactly the slice this process will ask for.
    pub fn use_cache(&mut self, path: PathBuf, hash_bits: u32, share: (usize, usize)) {
        self.cache = Some(CacheUse { path, hash_bits, share });
    }

    /// The reader of thread `rank` of `world`: its share of the cache's blocks when there is a
    /// cache, else of the text splits, in input order.
    pub fn reader(&self, rank: usize, world: usize) -> Result<Reader, DataError> {
        let Some(c) = &self.cache else { return Ok(self.source_reader(rank, world)) };
        let (r, w) = share_of(c.share, rank, world);
        Ok(Reader::Cache(CacheReader::open(&c.path, c.hash_bits)?.share(r, w)?))
    }

    /// Reads the first examples of the input itself (not a cache of it) before any work is done
    /// on it: an input that is empty, or whose first lines are malformed, fails now rather than
    /// after training or caching. `what` names
    /// the input in the message (`the holdout data/test.tsv`). Lines skipped here are counted
    /// apart, so the run's own report counts each skipped line once.
    pub fn preflight(&self, what: &str) -> Result<(), InputError> {
        let mut reader = self.reader_with(0, 1, BadLines::new(self.bad.limit()));
        let mut ex = Example::default();
        for _ in 0..PREFLIGHT_EXAMPLES {
            if !reader.next(&mut ex)? {
                break;
            }
        }
        if reader.examples_read() == 0 {
            return Err(InputError::Empty(what.to_string()));
        }
        Ok(())
    }

    /// The reader of the input itself (text or Parquet) for thread `rank` of `world`, whether or
    /// not there is a cache.
    pub fn source_reader(&self, rank: usize, world: usize) -> Reader {
        self.reader_with(rank, world, self.bad.clone())
    }

    /// [`Inputs::source_reader`], counting skipped lines in `bad`.
    fn reader_with(&self, rank: usize, world: usize, bad: Arc<BadLines>) -> Reader {
        let pipeline = self.pipeline.clone();
        match &self.splits {
            Splits::Text(s) => Reader::Text(ExampleReader::new(assign_splits(s, rank, world), pipeline, bad)),
            Splits::Parquet(s) => {
                Reader::Parquet(ParquetReader::new(assign_parquet_splits(s, rank, world), pipeline, bad))
            }
            Splits::Batches(b, held) => {
                let (r, w) = share_of(*held, rank, world);
                Reader::Batches(BatchesReader::new(b.clone(), batch_share(b, r, w), pipeline, bad))
            }
        }
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
