//! Typed errors of model and optimizer settings, caught once at start-up instead of as NaNs later.

use thiserror::Error;

/// A model or optimizer setting that cannot train.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ModelError {
    /// FM and FFM need at least one latent dimension.
    #[error("model {kind}: k must be > 0")]
    ZeroK {
        /// Model name as written in the config.
        kind: &'static str,
    },
    /// FFM keeps one latent vector per field, so it needs to know how many there are.
    #[error("model ffm: num_fields must be > 0")]
    ZeroFields,
    /// A non-finite init scale would poison every latent vector.
    #[error("model: init_scale must be finite, got {0}")]
    BadInitScale(f32),
    /// A row would not fit in memory addressing (dim overflows).
    #[error("model: row dimension overflows (k={k}, num_fields={num_fields})")]
    DimOverflow {
        /// Latent dimension.
        k: usize,
        /// Number of fields.
        num_fields: usize,
    },
    /// An optimizer hyperparameter outside its valid range.
    #[error("optimizer {optimizer}: {name} = {value} but must be {expected}")]
    BadHyper {
        /// Optimizer name.
        optimizer: &'static str,
        /// Hyperparameter name.
        name: &'static str,
        /// Value given.
        value: f32,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// A hyperparameter this optimizer does not have.
    #[error("optimizer {optimizer} has no hyperparameter `{name}` (it has: {})", crate::optim::hyperparameters(optimizer).join(", "))]
    UnknownHyper {
        /// Optimizer name.
        optimizer: &'static str,
        /// The hyperparameter asked for.
        name: String,
    },
    /// An example refers to a field the FFM model has no latent vectors for.
    #[error("feature field {field} out of range: model has {num_fields} fields")]
    FieldOutOfRange {
        /// Field of the offending feature.
        field: u32,
        /// Fields the model was built for.
        num_fields: usize,
    },
}
