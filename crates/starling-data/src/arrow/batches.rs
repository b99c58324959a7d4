//! Reading examples out of record batches: the decoding both the Parquet reader and the reader of
//! in-memory batches (Python, Spark) share, and the latter reader itself.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use starling_core::{Example, ExampleBuf};

use super::{column_roles, BatchRows, Role};
use crate::error::DataError;
use crate::pipeline::Pipeline;
use crate::reader::BadLines;

/// Examples decoded from one batch at a time, handed out in order.
#[derive(Default)]
pub struct Decoded {
    buf: ExampleBuf,
    taken: usize,
    scratch: Example,
    examples: u64,
}

impl Decoded {
    /// Nothing decoded yet.
    pub fn new() -> Self {
        Decoded { buf: ExampleBuf::new(), ..Default::default() }
    }

    /// Moves the next decoded example into `ex`; `false` when the batch is used up.
    #[inline]
    pub fn take(&mut self, ex: &mut Example) -> bool {
        if self.taken >= self.buf.len() {
            return false;
        }
        self.buf.get_into(self.taken, ex);
        self.taken += 1;
        self.examples += 1;
        true
    }

    /// Examples handed out so far.
    pub fn examples(&self) -> u64 {
        self.examples
    }

    /// Forgets the decoded batch (to start over).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.taken = 0;
    }

    /// Decodes `rows` of `batch` (columns used as `roles` say) through `pipeline`, replacing what
    /// was decoded before. A row that cannot become an example goes to `bad`, named as row
    /// `first_row + i` (1-based) of `source`.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &mut self,
        batch: &RecordBatch,
        roles: &[Role],
        rows: Range<usize>,
        pipeline: &mut Pipeline,
        bad: &BadLines,
        source: &Path,
        first_row: u64,
    ) -> Result<(), DataError> {
        let mut cols = BatchRows::new(batch, roles)
            .map_err(|message| DataError::Header { path: source.to_path_buf(), message })?;
        self.clear();
        for row in rows.clone() {
            let mut sink = pipeline.begin(&mut self.scratch);
            match cols.feed(row, &mut sink) {
                Ok(()) => {
                    sink.finish();
                    self.buf.push(&self.scratch);
                }
                Err(e) => bad.record(DataError::Row {
                    path: source.to_path_buf(),
                    row: first_row + (row - rows.start) as u64,
                    column: e.column,
                    message: e.message,
                })?,
            }
        }
        Ok(())
    }
}

/// Reads examples from record batches held in memory, a share of their rows per reader.
pub struct BatchesReader {
    batches: Arc<Vec<RecordBatch>>,
    /// `(batch, rows)` pieces of this reader's share, in order.
    pieces: Vec<(usize, Range<usize>)>,
    next_piece: usize,
    pipeline: Pipeline,
    bad: Arc<BadLines>,
    decoded: Decoded,
}

/// The `(batch, rows)` pieces of the rows `total * rank / world .. total * (rank + 1) / world`
/// of `batches` taken end to end: contiguous, balanced shares in batch order.
pub fn batch_share(batches: &[RecordBatch], rank: usize, world: usize) -> Vec<(usize, Range<usize>)> {
    let world = world.max(1);
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let (lo, hi) = (total * rank / world, total * (rank + 1) / world);
    let (mut out, mut start) = (Vec::new(), 0);
    for (b, batch) in batches.iter().enumerate() {
        let end = start + batch.num_rows();
        let (a, z) = (lo.max(start), hi.min(end));
        if a < z {
            out.push((b, a - start..z - start));
        }
        start = end;
    }
    out
}

impl BatchesReader {
    /// A reader of `pieces` of `batches` (see [`batch_share`]) through a columnar `pipeline`.
    pub fn new(
        batches: Arc<Vec<RecordBatch>>,
        pieces: Vec<(usize, Range<usize>)>,
        pipeline: Pipeline,
        bad: Arc<BadLines>,
    ) -> Self {
        BatchesReader { batches, pieces, next_piece: 0, pipeline, bad, decoded: Decoded::new() }
    }

    /// Examples returned so far.
    pub fn examples_read(&self) -> u64 {
        self.decoded.examples()
    }

    /// Reads the next example into `ex`; `Ok(false)` at the end of this reader's share.
    pub fn next(&mut self, ex: &mut Example) -> Result<bool, DataError> {
        loop {
            if self.decoded.take(ex) {
                return Ok(true);
            }
            let Some((b, rows)) = self.pieces.get(self.next_piece).cloned() else { return Ok(false) };
            self.next_piece += 1;
            let batch = &self.batches[b];
            let source = PathBuf::from(format!("record batch {}", b + 1));
            let roles = column_roles(
                batch.schema_ref(),
                self.pipeline.columnar_fields(),
                &self.pipeline.config().columns,
                self.pipeline.labels_required(),
            )
            .map_err(|message| DataError::Header { path: source.clone(), message })?;
            let first = rows.start as u64 + 1;
            self.decoded.decode(batch, &roles, rows, &mut self.pipeline, &self.bad, &source, first)?;
        }
    }
}
