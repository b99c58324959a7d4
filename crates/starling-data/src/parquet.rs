//! Parquet input: files or Spark-written directories of them, read as Arrow record batches and
//! turned into examples by the column mapping of [`crate::arrow`].
//!
//! Work is split by row group (Spark writes one or a few per file); a row group is cut into row
//! ranges when there are fewer row groups than readers, so every thread or worker gets a share.

use std::cell::Cell;
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use starling_core::Example;

use crate::arrow::{column_roles, field_list, ColumnKind, Decoded, Role};
use crate::error::DataError;
use crate::input::assign_by_size;
use crate::pipeline::{ColumnConfig, Pipeline};
use crate::reader::BadLines;

/// Rows decoded per Arrow batch.
const BATCH_ROWS: usize = 8192;

/// A share of one Parquet file: rows `first..first + rows` of row group `row_group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetSplit {
    /// The file.
    pub path: PathBuf,
    /// Row group index in the file.
    pub row_group: usize,
    /// First row, counted within the row group.
    pub first: u64,
    /// Rows in this split.
    pub rows: u64,
    /// Compressed bytes of the share (for balancing).
    pub bytes: u64,
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut f, &mut magic).map_err(|e| DataError::io(path, e))?;
    if n < 4 || &magic != b"PAR1" {
        // One job reads one format: the training input's, when `format = auto`.
        return Err(DataError::Header {
            path: path.to_path_buf(),
            message: "not a Parquet file (no PAR1 magic); a job reads every input in one format, here parquet".into(),
        });
    }
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| parquet_error(path, e))
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Header { path: path.to_path_buf(), message: format!("not readable as Parquet: {e}") }
}

thread_local! {
    /// Calls into the `parquet` crate under way on this thread ([`guarded`]).
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, which calls into the `parquet` crate. That crate panics on some malformed files
/// instead of returning an error (found by the parquet fuzz target: "Decoder for dict should
/// have been set"), so a panic inside becomes an error naming `path`. The panic hook stays
/// silent for it, since the error says it; every other panic reaches the hook as before.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, DataError>) -> Result<T, DataError> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    GUARDED.with(|g| g.set(g.get() + 1));
    // A reader whose decoder panicked is not used again: the error ends its input.
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    result.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(parquet_error(path, format!("the decoder failed on malformed data ({what})")))
    })
}

/// The Arrow schema of a Parquet file.
pub fn read_schema(path: &Path) -> Result<Arc<Schema>, DataError> {
    guarded(path, || Ok(open(path)?.schema().clone()))
}

/// The base fields of Parquet `files` for `config`, from the first file's schema.
pub fn parquet_fields(files: &[PathBuf], config: &ColumnConfig) -> Result<Vec<(String, ColumnKind)>, DataError> {
    let first = files.first().ok_or_else(|| DataError::NoInput { paths: "(no files)".into() })?;
    let schema = read_schema(first)?;
    let fields = field_list(&schema, config).map_err(|message| DataError::Header { path: first.clone(), message })?;
    // Check the mapping against the first file now, so a wrong config fails before training.
    column_roles(&schema, &fields, config, true)
        .map_err(|message| DataError::Header { path: first.clone(), message })?;
    Ok(fields)
}

/// Cuts `files` into about `n` splits of whole row groups, or of row ranges when there are
/// fewer row groups than `n`.
pub fn parquet_splits(files: &[PathBuf], n: usize) -> Result<Vec<ParquetSplit>, DataError> {
    let mut groups = Vec::new();
    for f in files {
        let b = guarded(f, || open(f))?;
        for (i, rg) in b.metadata().row_groups().iter().enumerate() {
            if rg.num_rows() > 0 {
                groups.push((f.clone(), i, rg.num_rows() as u64, rg.compressed_size().max(1) as u64));
            }
        }
    }
    let pieces = n.max(1).div_ceil(groups.len().max(1)) as u64;
    let mut out = Vec::new();
    for (path, row_group, rows, bytes) in groups {
        let k = pieces.min(rows);
        for j in 0..k {
            let (a, b) = (rows * j / k, rows * (j + 1) / k);
            let share = (bytes * (b - a)).div_ceil(rows);
            out.push(ParquetSplit { path: path.clone(), row_group, first: a, rows: b - a, bytes: share });
        }
    }
    Ok(out)
}

/// The splits reader `rank` of `world` reads (balanced by bytes, in input order).
pub fn assign_parquet_splits(splits: &[ParquetSplit], rank: usize, world: usize) -> Vec<ParquetSplit> {
    assign_by_size(splits, |s| s.bytes, rank, world)
}

/// The batch reader of an open split and what its columns are for.
struct Open {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    roles: Vec<Role>,
    /// Row number (from 1, within the file) of the next batch's first row.
    next_row: u64,
}

/// Reads examples from Parquet splits through a pipeline, with the shared bad-row policy.
pub struct ParquetReader {
    splits: Vec<ParquetSplit>,
    next_split: usize,
    pipeline: Pipeline,
    bad: Arc<BadLines>,
    open: Option<Open>,
    decoded: Decoded,
}

impl ParquetReader {
    /// A reader of `splits` through `pipeline`, which must be a Parquet pipeline
    /// ([`Pipeline::from_files`] of the whole input).
    pub fn new(splits: Vec<ParquetSplit>, pipeline: Pipeline, bad: Arc<BadLines>) -> Self {
        ParquetReader { splits, next_split: 0, pipeline, bad, open: None, decoded: Decoded::new() }
    }

    /// Examples returned so far.
    pub fn examples_read(&self) -> u64 {
        self.decoded.examples()
    }

    fn open_next(&mut self) -> Result<bool, DataError> {
        let Some(split) = self.splits.get(self.next_split).cloned() else { return Ok(false) };
        self.next_split += 1;
        guarded(&split.path.clone(), || self.open_split(split))
    }

    /// Opens `split` for decoding.
    fn open_split(&mut self, split: ParquetSplit) -> Result<bool, DataError> {
        let b = open(&split.path)?;
        let header = |message| DataError::Header { path: split.path.clone(), message };
        let roles = column_roles(
            b.schema(),
            self.pipeline.columnar_fields(),
            &self.pipeline.config().columns,
            self.pipeline.labels_required(),
        )
        .map_err(header)?;
        // Read only the columns in use; the projected batch keeps them in schema order.
        let used: Vec<usize> = (0..roles.len()).filter(|&i| roles[i] != Role::Ignore).collect();
        let mask = ProjectionMask::roots(b.parquet_schema(), used.iter().copied());
        let before: u64 =
            b.metadata().row_groups()[..split.row_group].iter().map(|rg| rg.num_rows() as u64).sum::<u64>()
                + split.first;
        let group_rows = b.metadata().row_groups()[split.row_group].num_rows() as u64;
        let mut selectors = vec![RowSelector::skip(split.first as usize), RowSelector::select(split.rows as usize)];
        let rest = group_rows - split.first - split.rows;
        if rest > 0 {
            selectors.push(RowSelector::skip(rest as usize));
        }
        let batches = b
            .with_row_groups(vec![split.row_group])
            .with_row_selection(RowSelection::from(selectors))
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| parquet_error(&split.path, e))?;
        let roles = used.iter().map(|&i| roles[i]).collect();
        self.open = Some(Open { path: split.path, batches, roles, next_row: before + 1 });
        Ok(true)
    }

    /// Decodes the next batch of the open split; `false` when the split is done.
    fn fill(&mut self) -> Result<bool, DataError> {
        let Some(open) = self.open.as_mut() else { return Ok(false) };
        let path = open.path.clone();
        let batch: RecordBatch = match guarded(&path, || Ok(open.batches.next()))? {
            None => return Ok(false),
            Some(b) => b.map_err(|e| parquet_error(&open.path, e))?,
        };
        let rows = 0..batch.num_rows();
        self.decoded.decode(&batch, &open.roles, rows, &mut self.pipeline, &self.bad, &open.path, open.next_row)?;
        open.next_row += batch.num_rows() as u64;
        Ok(true)
    }

    /// Reads the next example into `ex`; `Ok(false)` at the end of this reader's splits.
    pub fn next(&mut self, ex: &mut Example) -> Result<bool, DataError> {
        loop {
            if self.decoded.take(ex) {
                return Ok(true);
            }
            if self.fill()? {
                continue;
            }
            self.open = None;
            if !self.open_next()? {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
