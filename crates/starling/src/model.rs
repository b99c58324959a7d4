//! A trained model in memory: the job it came from, its learner and its table of rows.

use starling_core::{DenseTable, HashTable, Learner, Table};

use crate::config::{ConfigError, JobConfig};

/// Dense tables above this size are refused: a typo in `hash_bits` must not take the machine's memory.
const MAX_DENSE_BYTES: u128 = 64 << 30;

/// The table behind a model: direct-indexed when keys are folded to `hash_bits`, a hash map otherwise.
pub enum ModelTable {
    /// `2^hash_bits` rows, indexed by key.
    Dense(DenseTable),
    /// Collisionless map of full 64-bit keys.
    Hash(HashTable),
}

/// Runs `$body` with `$t` bound to the concrete table, so hot loops are monomorphised.
#[macro_export]
macro_rules! with_table {
    ($table:expr, |$t:ident| $body:expr) => {
        match $table {
            $crate::model::ModelTable::Dense($t) => $body,
            $crate::model::ModelTable::Hash($t) => $body,
        }
    };
}

impl ModelTable {
    /// An empty table for `learner`'s rows: dense when `hash_bits > 0`.
    pub fn new(learner: &Learner, hash_bits: u32) -> Result<Self, ConfigError> {
        if hash_bits == 0 {
            return Ok(ModelTable::Hash(learner.hash_table()));
        }
        let bytes = (1u128 << hash_bits) * learner.row_len() as u128 * 4;
        if bytes > MAX_DENSE_BYTES {
            return Err(ConfigError::Invalid {
                field: "features.hash_bits",
                message: format!(
                    "2^{hash_bits} rows of {} floats need {} GiB; lower hash_bits, or set it to 0 to keep only the keys seen in a hash table",
                    learner.row_len(),
                    bytes >> 30
                ),
            });
        }
        Ok(ModelTable::Dense(learner.dense_table(hash_bits)))
    }

    /// A table for `learner` as [`ModelTable::new`] makes it, reusing `spare`'s memory (cleared)
    /// when it is a dense table of the same shape.
    pub fn reuse(spare: Option<ModelTable>, learner: &Learner, hash_bits: u32) -> Result<Self, ConfigError> {
        match spare {
            Some(ModelTable::Dense(mut t))
                if hash_bits > 0 && t.bits() == hash_bits && t.row_len() == learner.row_len() =>
            {
                t.clear(learner.row_init());
                Ok(ModelTable::Dense(t))
            }
            _ => ModelTable::new(learner, hash_bits),
        }
    }

    /// The table as a trait object, for code off the hot path.
    pub fn as_dyn(&self) -> &dyn Table {
        with_table!(self, |t| t as &dyn Table)
    }
}

/// A model: weights with optimizer state, and everything needed to featurize new input the same way.
pub struct Model {
    /// The job it was trained by (its `[features]` are how input must be read).
    pub job: JobConfig,
    /// Model shape, optimizer and loss.
    pub learner: Learner,
    /// Rows of weights and optimizer state.
    pub table: ModelTable,
    /// Passes over training data done so far (resumed training continues the count).
    pub passes_done: u32,
    /// Training examples seen so far.
    pub examples_seen: u64,
}

impl Model {
    /// Probability (logistic loss) or value (squared loss) for a featurized example.
    pub fn predict(&self, ex: &starling_core::Example, scratch: &mut starling_core::LearnScratch) -> f32 {
        with_table!(&self.table, |t| self.learner.predict(t, ex, scratch))
    }
}
