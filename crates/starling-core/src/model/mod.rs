//! What a model is (design.md, decision 11): the tables it declares and its step over a
//! mini-batch. The worker loop, the parameter server, model files and prediction see only
//! this, so a new model (a ready one, a graph of blocks from a job config, or one written in
//! Rust) needs no change anywhere else.
//!
//! The shallow models (LR, FM, FFM) live in [`shallow`], defined once for both their fast
//! online path and this interface; graphs of blocks live in [`crate::graph`].

use std::any::Any;

use serde::{Deserialize, Serialize};

use crate::loss::Loss;
use crate::minibatch::MiniBatch;

pub mod shallow;
pub mod spec;

pub use shallow::{ModelSpec, Scratch, ShallowKind, DEFAULT_INIT_SCALE, DEFAULT_K};
pub use shallow_model::ShallowModel;
pub use spec::{dense_chunks, Init, TableKind, TableSpec};

mod shallow_model;

/// The model family a job config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic (or linear) regression: one weight per key.
    Lr,
    /// Factorization machine of order 2 with latent dimension `k`.
    Fm,
    /// Field-aware factorization machine: one k-vector per (key, other field).
    Ffm,
    /// Wide & Deep: a linear part plus an MLP over field embeddings.
    WideDeep,
    /// DeepFM: a linear part, FM's pairwise term and an MLP, over shared field embeddings.
    #[serde(rename = "deepfm")]
    DeepFm,
    /// Deep & Cross: cross layers beside an MLP (`v2 = true`: DCN-v2's matrix crosses).
    Dcn,
    /// DLRM: pairwise dot products of field embeddings into a top MLP.
    Dlrm,
    /// FinalMLP: two gated MLP streams fused by a bilinear layer.
    #[serde(rename = "finalmlp")]
    FinalMlp,
    /// A graph of blocks written in `[[model.blocks]]`.
    Graph,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ModelKind {
    /// Every family, in the order docs list them.
    pub const ALL: [ModelKind; 9] = [
        ModelKind::Lr,
        ModelKind::Fm,
        ModelKind::Ffm,
        ModelKind::WideDeep,
        ModelKind::DeepFm,
        ModelKind::Dcn,
        ModelKind::Dlrm,
        ModelKind::FinalMlp,
        ModelKind::Graph,
    ];

    /// Name as written in configs, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Lr => "lr",
            ModelKind::Fm => "fm",
            ModelKind::Ffm => "ffm",
            ModelKind::WideDeep => "wide_deep",
            ModelKind::DeepFm => "deepfm",
            ModelKind::Dcn => "dcn",
            ModelKind::Dlrm => "dlrm",
            ModelKind::FinalMlp => "finalmlp",
            ModelKind::Graph => "graph",
        }
    }

    /// The shallow family, for LR, FM and FFM.
    pub fn shallow(self) -> Option<ShallowKind> {
        match self {
            ModelKind::Lr => Some(ShallowKind::Lr),
            ModelKind::Fm => Some(ShallowKind::Fm),
            ModelKind::Ffm => Some(ShallowKind::Ffm),
            _ => None,
        }
    }
}

impl From<ShallowKind> for ModelKind {
    fn from(k: ShallowKind) -> Self {
        match k {
            ShallowKind::Lr => ModelKind::Lr,
            ShallowKind::Fm => ModelKind::Fm,
            ShallowKind::Ffm => ModelKind::Ffm,
        }
    }
}

/// Gradients of one step, per table in the model's table order: `dim` floats per key pulled
/// (sparse tables: the batch's keys of the table's group; dense tables: every chunk), and
/// which keys got any.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    /// Per table: the gradient of every pulled key, `dim` floats each.
    pub grads: Vec<Vec<f32>>,
    /// Per table: whether the key got a gradient (only those are pushed).
    pub touched: Vec<Vec<bool>>,
}

impl Gradients {
    /// Zeroed buffers for the keys `batch` (sealed) pulls of each of `tables`.
    pub fn reset_for(&mut self, tables: &[TableSpec], batch: &MiniBatch) {
        let keys: Vec<usize> = tables
            .iter()
            .map(|t| match t.kind {
                TableKind::Sparse => batch.group_keys(t.group).len(),
                TableKind::Dense { len } => dense_chunks(len, t.dim),
            })
            .collect();
        self.reset(tables, &keys);
    }

    /// Zeroed buffers for `keys[t]` keys of `tables[t].dim` floats.
    pub fn reset(&mut self, tables: &[TableSpec], keys: &[usize]) {
        self.grads.resize_with(tables.len(), Vec::new);
        self.touched.resize_with(tables.len(), Vec::new);
        for ((t, g), (touched, &n)) in tables.iter().zip(&mut self.grads).zip(self.touched.iter_mut().zip(keys)) {
            g.clear();
            g.resize(n * t.dim, 0.0);
            touched.clear();
            touched.resize(n, false);
        }
    }
}

/// The keys `batch` (sealed) pulls of the table `spec`: its key group's for a sparse table, its
/// chunks' (`dense_keys`, from [`TableSpec::dense_keys`]) for a dense one.
pub fn batch_keys<'k>(spec: &TableSpec, batch: &'k MiniBatch, dense_keys: &'k [u64]) -> &'k [u64] {
    match spec.kind {
        TableKind::Sparse => batch.group_keys(spec.group),
        TableKind::Dense { .. } => dense_keys,
    }
}

/// Called with each example's raw score, label and weight, in batch order.
pub type OnScore<'a> = &'a mut dyn FnMut(f32, f32, f32);

/// A model: its tables, and a step that scores a mini-batch and, when training, computes the
/// gradient of every table's pulled rows.
pub trait Model: Send + Sync + std::fmt::Debug {
    /// The tables, in the order `weights` and [`Gradients`] use.
    fn tables(&self) -> &[TableSpec];
    /// The loss the scores are trained on (it maps scores to predictions).
    fn loss(&self) -> Loss;
    /// Number of key groups: the batch's keys are split by group, and a sparse table is pulled
    /// with the keys of its group (one table per field means one group per field).
    fn key_groups(&self) -> usize {
        1
    }
    /// The key group of a feature of `field`.
    fn key_group(&self, _field: u32) -> usize {
        0
    }
    /// True when [`Model::step`]'s gradients are means over the batch (deep models, as in
    /// PyTorch), false when they are sums (LR, FM and FFM, as online learning adds them up).
    /// Workers sharing a step then divide their means by their number, so that what the servers
    /// add up is the mean over the whole step's examples.
    fn batch_mean(&self) -> bool {
        false
    }
    /// Fresh scratch for [`Model::step`], one per thread.
    fn scratch(&self) -> Box<dyn Any + Send>;
    /// Scores every example of `batch` (sealed by [`MiniBatch::seal_groups`] with this model's
    /// groups) given `weights[t]`, the pulled values of table `t`; with `grads`, also computes
    /// the gradients of the examples' loss. `step` seeds the step's randomness (dropout).
    fn step(
        &self,
        batch: &MiniBatch,
        weights: &[Vec<f32>],
        step: u64,
        grads: Option<&mut Gradients>,
        scratch: &mut dyn Any,
        on_score: OnScore<'_>,
    );
}
