//! What a table of a model holds: row shape, optimizer, and how fresh rows look.
//!
//! Sparse tables (LR/FM/FFM rows, embeddings) initialise as a pure function of (seed, key), so a
//! job gives the same model in one process or many. Dense parameters (MLP layers) are tables too:
//! a dense block of `len` floats is split into chunks of `dim` floats keyed `0, 1, 2, ...`.

use serde::{Deserialize, Serialize};

use crate::nn::{ParamInit, Segment};
use crate::optim::Optimizer;
use crate::rng::unit_for;
use crate::table::RowInit;
use crate::ModelSpec;

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
    /// Sparse rows whose slots start differently (an embedding row's linear weight at 0, its
    /// vector uniform): slot `j` follows the run of `slots` holding `j`, seeded by (seed, key, j).
    Rows {
        /// Seed of the init.
        seed: u64,
        /// Runs of slots, `dim` in all.
        slots: Vec<Segment>,
    },
    /// A dense block: the float at flat index `key · dim + j` follows the run of `segments`
    /// holding it, seeded by (seed, index); padding past the block's end is zero.
    Dense {
        /// Seed of the init.
        seed: u64,
        /// Runs of parameters, the block's length in all.
        segments: Vec<Segment>,
    },
}

/// Whether a table holds sparse rows by feature key or chunks of a dense block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableKind {
    /// Rows by feature key, pulled for the keys of the batch's key group `group`.
    #[default]
    Sparse,
    /// `len` floats in chunks of `dim`, pulled whole every step.
    Dense {
        /// Floats in the block (the last chunk is padded).
        len: usize,
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
    /// Sparse rows or a dense block (older manifests, without it, hold sparse tables).
    #[serde(default)]
    pub kind: TableKind,
    /// Sparse tables: the key group whose keys index it (see `Model::key_group`).
    #[serde(default)]
    pub group: usize,
    /// Synchronous: a server sums one step's pushes of every live worker and applies their mean
    /// once, serving the next step only then (design.md, decision 12); otherwise each push is
    /// applied as it comes, under the staleness rule.
    #[serde(default)]
    pub sync: bool,
}

impl Init {
    /// Writes the fresh weights of `key` into `w` (a row's or chunk's weights, all of them).
    #[inline]
    pub fn fill_weights(&self, key: u64, w: &mut [f32]) {
        match self {
            Init::Model(spec) => spec.init_weights(key, w),
            Init::Zeros => w.fill(0.0),
            Init::Uniform { scale, seed } => {
                for (j, v) in w.iter_mut().enumerate() {
                    *v = scale * unit_for(*seed, key, j);
                }
            }
            Init::Rows { seed, slots } => {
                let mut j = 0;
                for &(len, init) in slots {
                    for v in &mut w[j..j + len] {
                        *v = match init {
                            ParamInit::Zeros => 0.0,
                            ParamInit::Ones => 1.0,
                            ParamInit::Uniform(s) => s * unit_for(*seed, key, j),
                        };
                        j += 1;
                    }
                }
            }
            Init::Dense { seed, segments } => {
                w.fill(0.0);
                let (first, mut run_start) = (key * w.len() as u64, 0u64);
                for &(len, init) in segments {
                    let run_end = run_start + len as u64;
                    for (j, v) in w.iter_mut().enumerate() {
                        let at = first + j as u64;
                        if (run_start..run_end).contains(&at) {
                            *v = init.value(*seed, at);
                        }
                    }
                    run_start = run_end;
                }
            }
        }
    }

    /// True when fresh weights are all zero, so zeroed memory is a fresh row.
    pub fn is_zero(&self) -> bool {
        match self {
            Init::Model(spec) => spec.zero_init(),
            Init::Zeros => true,
            Init::Uniform { scale, .. } => *scale == 0.0,
            Init::Rows { slots: runs, .. } | Init::Dense { segments: runs, .. } => {
                runs.iter().all(|&(_, init)| init == ParamInit::Zeros || init == ParamInit::Uniform(0.0))
            }
        }
    }
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
            Init::Rows { seed, .. } => write!(f, "per-slot init (seed {seed})"),
            Init::Dense { seed, .. } => write!(f, "dense init (seed {seed})"),
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
        TableSpec::sparse(name, model.dim(), optimizer, Init::Model(model.clone()), 0)
    }

    /// A sparse table of `dim` weights per row, indexed by the keys of key group `group`.
    pub fn sparse(name: &str, dim: usize, optimizer: &Optimizer, init: Init, group: usize) -> Self {
        TableSpec {
            name: name.to_string(),
            dim,
            optimizer: *optimizer,
            init,
            kind: TableKind::Sparse,
            group,
            sync: false,
        }
    }

    /// A dense block of `len` floats stored as chunks of `chunk` floats (the last chunk padded).
    pub fn dense_block(name: &str, len: usize, chunk: usize, optimizer: &Optimizer, init: Init) -> Self {
        TableSpec {
            name: name.to_string(),
            dim: chunk,
            optimizer: *optimizer,
            init,
            kind: TableKind::Dense { len },
            group: 0,
            sync: false,
        }
    }

    /// The keys of a dense table's chunks, `0..chunks` (empty for a sparse table).
    pub fn dense_keys(&self) -> Vec<u64> {
        match self.kind {
            TableKind::Dense { len } => (0..dense_chunks(len, self.dim) as u64).collect(),
            TableKind::Sparse => Vec::new(),
        }
    }

    /// Floats per stored row: weights then optimizer state.
    pub fn row_len(&self) -> usize {
        self.dim + self.optimizer.state_len(self.dim)
    }

    /// Writes the fresh weights of `key` into `w` (`dim` floats).
    #[inline]
    pub fn init_weights(&self, key: u64, w: &mut [f32]) {
        self.init.fill_weights(key, w);
    }

    /// Writes the fresh row (weights then zero state) of `key` into `row` (`row_len` floats).
    #[inline]
    pub fn fill(&self, key: u64, row: &mut [f32]) {
        let (w, state) = row.split_at_mut(self.dim);
        self.init_weights(key, w);
        state.fill(0.0);
    }

    /// How the in-memory tables of this table's rows initialise them.
    pub fn row_init(&self) -> RowInit {
        RowInit::with(self.init.clone(), self.dim, self.row_len())
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
        let init = t.row_init();
        let (mut a, mut b) = (vec![0f32; t.row_len()], vec![0f32; t.row_len()]);
        t.fill(77, &mut a);
        init.fill(77, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn dense_blocks_chunk_up() {
        assert_eq!(dense_chunks(10, 4), 3);
        assert_eq!(dense_chunks(8, 4), 2);
        let t = TableSpec::dense_block("mlp", 10, 4, &Optimizer::sgd_default(), Init::Uniform { scale: 0.1, seed: 1 });
        assert_eq!(t.dense_keys(), vec![0, 1, 2]);
        let mut w = [0f32; 4];
        t.init_weights(2, &mut w);
        assert!(w.iter().all(|v| v.abs() <= 0.1) && w.iter().any(|&v| v != 0.0));
    }
}
