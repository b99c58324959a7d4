//! What a server table holds: row shape, optimizer, and how fresh rows look.
//!
//! Sparse model tables (LR/FM/FFM rows) initialise like the single-machine trainer's tables, so a
//! job gives the same model in one process or many. Dense parameters (MLP layers) are tables too:
//! a dense block of `len` floats is split into chunks of `dim` floats keyed `0, 1, 2, ...`.

use serde::{Deserialize, Serialize};
use starling_core::rng::unit_for;
use starling_core::{ModelSpec, Optimizer, RowInit};

/// How the weights of a row look before its first update; optimizer state always starts at zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    /// The model's own init (linear 0, latent uniform by key), as in single-machine tables.
    Model(ModelSpec),
    /// All zeros.
    Zeros,
    /// Uniform in `[-scale, scale]`, a pure function of (seed, key, slot).
    Uniform {
        /// Half-width of the interval.
        scale: f32,
        /// Seed of the init.
        seed: u64,
    },
}

/// Shape and update rule of one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Name, for logs and checkpoints.
    pub name: String,
    /// Weights per row (what crosses the wire).
    pub dim: usize,
    /// Rule the server applies to pushed gradients; its state stays on the server.
    pub optimizer: Optimizer,
    /// Fresh-row weights.
    pub init: Init,
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Init::Model(m) => write!(
                f,
                "{} init (k={}, {} fields, scale {}, seed {})",
                m.kind, m.k, m.num_fields, m.init_scale, m.seed
            ),
            Init::Zeros => f.write_str("zeros"),
            Init::Uniform { scale, seed } => write!(f, "uniform init (scale {scale}, seed {seed})"),
        }
    }
}

impl std::fmt::Display for TableSpec {
    /// `weights: 9 floats per row, adagrad, fm init (...)`, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} weights per row, {}, {}", self.name, self.dim, self.optimizer.name(), self.init)
    }
}

impl TableSpec {
    /// The sparse table of a single-machine model: same rows, same init.
    pub fn for_model(name: &str, model: &ModelSpec, optimizer: &Optimizer) -> Self {
        TableSpec { name: name.to_string(), dim: model.dim(), optimizer: *optimizer, init: Init::Model(model.clone()) }
    }

    /// A dense block stored as chunks of `chunk` floats (the last chunk padded).
    pub fn dense_block(name: &str, chunk: usize, optimizer: &Optimizer, init: Init) -> Self {
        TableSpec { name: name.to_string(), dim: chunk, optimizer: *optimizer, init }
    }

    /// Floats per stored row: weights then optimizer state.
    pub fn row_len(&self) -> usize {
        self.dim + self.optimizer.state_len(self.dim)
    }

    /// Writes the fresh weights of `key` into `w` (`dim` floats).
    #[inline]
    pub fn init_weights(&self, key: u64, w: &mut [f32]) {
        match &self.init {
            Init::Model(spec) => spec.init_weights(key, w),
            Init::Zeros => w.fill(0.0),
            Init::Uniform { scale, seed } => {
                for (j, v) in w.iter_mut().enumerate() {
                    *v = scale * unit_for(*seed, key, j);
                }
            }
        }
    }

    /// Writes the fresh row (weights then zero state) of `key` into `row` (`row_len` floats).
    #[inline]
    pub fn fill(&self, key: u64, row: &mut [f32]) {
        let (w, state) = row.split_at_mut(self.dim);
        self.init_weights(key, w);
        state.fill(0.0);
    }

    /// The single-machine [`RowInit`] equivalent, when this table holds a model's rows.
    pub fn row_init(&self) -> Option<RowInit> {
        match &self.init {
            Init::Model(spec) => Some(RowInit::new(spec, self.row_len())),
            _ => None,
        }
    }
}

/// Number of chunks of `dim` floats that hold a dense block of `len` floats.
pub fn dense_chunks(len: usize, dim: usize) -> usize {
    len.div_ceil(dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_tables_init_like_single_machine_tables() {
        let spec = ModelSpec { seed: 9, ..ModelSpec::fm(4) };
        let opt = Optimizer::adagrad_default();
        let t = TableSpec::for_model("w", &spec, &opt);
        let init = t.row_init().unwrap();
        let (mut a, mut b) = (vec![0f32; t.row_len()], vec![0f32; t.row_len()]);
        t.fill(77, &mut a);
        init.fill(77, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn dense_blocks_chunk_up() {
        assert_eq!(dense_chunks(10, 4), 3);
        assert_eq!(dense_chunks(8, 4), 2);
        let t = TableSpec::dense_block("mlp", 4, &Optimizer::sgd_default(), Init::Uniform { scale: 0.1, seed: 1 });
        let mut w = [0f32; 4];
        t.init_weights(2, &mut w);
        assert!(w.iter().all(|v| v.abs() <= 0.1) && w.iter().any(|&v| v != 0.0));
    }
}
