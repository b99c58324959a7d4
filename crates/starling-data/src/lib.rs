//! Starling's input side: finding input files, cutting them into splits for workers and threads,
//! streaming lines (plain or gzip) with bounded memory, parsing LibSVM, libFFM, Criteo TSV,
//! Vowpal Wabbit and CSV on bytes, and the feature pipeline that hashes them into `Example`s.
//!
//! This crate does I/O and parsing; its only numerics are feature hashing (from
//! `starling_core::hash`) and the numeric transforms of the pipeline.
//!
//! A trainer's path through it:
//! ```no_run
//! use starling_data::*;
//! # fn main() -> Result<(), DataError> {
//! let files = expand_inputs(&["data/train".into()])?;
//! let config = PipelineConfig { binary_labels: true, ..PipelineConfig::default() };
//! let pipeline = Pipeline::from_files(&config, &files)?;
//! let splits = assign_splits(&make_splits(&files, 64)?, /* rank */ 0, /* world */ 1);
//! let bad = BadLines::new(config.max_bad_lines);
//! let mut reader = ExampleReader::new(splits, pipeline.clone(), bad.clone());
//! let mut ex = starling_core::Example::default();
//! while reader.next(&mut ex)? { /* train on ex */ }
//! if let Some(report) = bad.report() { eprintln!("{report}"); }
//! # Ok(()) }
//! ```
pub mod synth;

/// Examples from Arrow record batches (Parquet, Spark, Python).
#[cfg(feature = "arrow")]
pub mod arrow;
/// The binary example cache: parse and hash once, read many passes.
pub mod cache;
/// Parquet files and Spark-written Parquet directories.
#[cfg(feature = "parquet")]
pub mod parquet;
/// Input at object store URLs, staged into local copies.
#[cfg(feature = "object-store")]
pub mod remote;

/// Errors, each naming the file, line and column where there is one.
pub mod error;
/// Line formats and the `RawSink` they feed.
pub mod format;
/// Input files, splits, worker assignment and line sources.
pub mod input;
/// The config-driven feature pipeline.
pub mod pipeline;
/// The example reader and the shared bad-line policy.
pub mod reader;

/// Writing and reading example caches.
pub use cache::{cache_status, read_cache_header, CacheHeader, CacheReader, CacheStats, CacheStatus, CacheWriter};
/// Errors of the input side.
pub use error::DataError;
/// What parsers feed, and the error of one line.
pub use format::{LineError, RawSink};
/// Input expansion, splitting, assignment and line reading.
pub use input::{
    assign_by_size, assign_splits, expand_inputs, is_data_file_name, is_gzip, is_url, make_splits, read_header,
    LineSource, Split,
};
/// The feature pipeline and its config.
pub use pipeline::{scan_num_fields, ColumnConfig, ExampleSink, Format, NumericTransform, Pipeline, PipelineConfig};
/// Reading examples, with a shared bad-line budget.
pub use reader::{BadLines, ExampleReader};

#[cfg(test)]
mod tests;
