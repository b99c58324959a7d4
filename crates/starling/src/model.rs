//! A trained model in memory: the job it came from, its network and a table per declared table.

use starling_core::graph::{Fields, GraphModel, GraphSettings};
use starling_core::model::{batch_keys, ShallowModel};
use starling_core::{
    DenseTable, Example, HashTable, LearnScratch, Learner, MiniBatch, Model as Step, Table, TableKind, TableSpec,
};

use crate::config::{ConfigError, EmbeddingTables, JobConfig};

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
    /// An empty table for `spec`'s rows: direct-indexed for sparse rows when `hash_bits > 0`.
    pub fn new(spec: &TableSpec, hash_bits: u32) -> Result<Self, ConfigError> {
        if hash_bits == 0 || spec.kind != TableKind::Sparse {
            return Ok(ModelTable::Hash(HashTable::new(spec.row_len(), spec.row_init())));
        }
        let bytes = (1u128 << hash_bits) * spec.row_len() as u128 * 4;
        if bytes > MAX_DENSE_BYTES {
            return Err(ConfigError::Invalid {
                field: "features.hash_bits",
                message: format!(
                    "2^{hash_bits} rows of {} floats need {} GiB; lower hash_bits, or set it to 0 to keep only the keys seen in a hash table",
                    spec.row_len(),
                    bytes >> 30
                ),
            });
        }
        DenseTable::try_new(hash_bits, spec.row_len(), spec.row_init()).map(ModelTable::Dense).ok_or_else(|| {
            ConfigError::Invalid {
                field: "features.hash_bits",
                message: format!(
                    "table `{}`: 2^{hash_bits} rows of {} floats need {:.1} GiB, more than this machine would give; lower hash_bits, or set it to 0 to keep only the keys seen in a hash table",
                    spec.name,
                    spec.row_len(),
                    bytes as f64 / (1u64 << 30) as f64
                ),
            }
        })
    }

    /// A table for `spec` as [`ModelTable::new`] makes it, reusing `spare`'s memory (cleared)
    /// when it is a dense table of the same shape.
    pub fn reuse(spare: Option<ModelTable>, spec: &TableSpec, hash_bits: u32) -> Result<Self, ConfigError> {
        match spare {
            Some(ModelTable::Dense(mut t))
                if hash_bits > 0
                    && spec.kind == TableKind::Sparse
                    && t.bits() == hash_bits
                    && t.row_len() == spec.row_len() =>
            {
                t.clear(spec.row_init());
                Ok(ModelTable::Dense(t))
            }
            _ => ModelTable::new(spec, hash_bits),
        }
    }

    /// The table as a trait object, for code off the hot path.
    pub fn as_dyn(&self) -> &dyn Table {
        with_table!(self, |t| t as &dyn Table)
    }
}

/// The network of a model: a shallow one, with its fast online path, or a graph of blocks.
#[derive(Debug)]
pub enum Net {
    /// LR, FM or FFM.
    Shallow(ShallowModel),
    /// A ready deep model or a graph from the job config.
    Graph(Box<GraphModel>),
}

impl Net {
    /// The network `job` describes, over an input with `fields`.
    pub fn new(job: &JobConfig, fields: &Fields) -> Result<Net, ConfigError> {
        match job.model.graph() {
            None => {
                let learner = Learner::new(job.model_spec(fields.names.len()), job.optimizer, job.model.loss)
                    .map_err(|e| ConfigError::Invalid { field: "model", message: e.to_string() })?;
                Ok(Net::Shallow(ShallowModel::new(learner).synchronous(job.cluster.bsp())))
            }
            Some(blocks) => {
                let settings = GraphSettings {
                    loss: job.model.loss,
                    seed: job.train.seed,
                    init_scale: job.model.init_scale,
                    per_field_tables: job.model.embedding_tables == EmbeddingTables::PerField,
                    sparse_optimizer: job.optimizer,
                    dense_optimizer: job.model.dense_optimizer,
                    sync_dense: job.cluster.dense_sync(),
                    sync_sparse: job.cluster.bsp(),
                    numeric_stats: job.model.numeric_stats.iter().map(|(f, &[m, s])| (f.clone(), (m, s))).collect(),
                };
                let g = GraphModel::build(&blocks, job.model.output.as_deref(), fields, &settings)
                    .map_err(|e| ConfigError::Invalid { field: "model", message: e.to_string() })?;
                Ok(Net::Graph(Box::new(g)))
            }
        }
    }

    /// The network as the step every worker runs.
    pub fn step(&self) -> &dyn Step {
        match self {
            Net::Shallow(m) => m,
            Net::Graph(g) => g.as_ref(),
        }
    }

    /// The shallow learner, whose online path `starling train` runs with batches of one.
    pub fn learner(&self) -> Option<&Learner> {
        match self {
            Net::Shallow(m) => Some(&m.learner),
            Net::Graph(_) => None,
        }
    }

    /// The declared tables.
    pub fn tables(&self) -> &[TableSpec] {
        self.step().tables()
    }

    /// Multiplies every learning rate by `factor` (a schedule's step).
    pub fn scale_lr(&mut self, factor: f32) {
        match self {
            Net::Shallow(m) => m.scale_lr(factor),
            Net::Graph(g) => g.scale_lr(factor),
        }
    }
}

/// A model: weights with optimizer state, and everything needed to featurize new input the same way.
pub struct Model {
    /// The job it was trained by (its `[features]` are how input must be read).
    pub job: JobConfig,
    /// The input's fields, as the network was built over them.
    pub fields: Fields,
    /// The network.
    pub net: Net,
    /// Rows of weights and optimizer state, one table per declared table.
    pub tables: Vec<ModelTable>,
    /// Passes over training data done so far (resumed training continues the count).
    pub passes_done: u32,
    /// Training examples seen so far.
    pub examples_seen: u64,
}

/// Examples scored together by [`Scorer`].
pub const SCORE_BATCH: usize = 1024;

impl Model {
    /// A fresh model of `job` over `fields`, its tables empty.
    pub fn new(job: &JobConfig, fields: Fields) -> Result<Model, ConfigError> {
        let net = Net::new(job, &fields)?;
        let tables =
            net.tables().iter().map(|t| ModelTable::new(t, job.features.hash_bits)).collect::<Result<_, _>>()?;
        Ok(Model { job: job.clone(), fields, net, tables, passes_done: 0, examples_seen: 0 })
    }

    /// The shallow model's table (the only one it has).
    pub fn table(&self) -> &ModelTable {
        &self.tables[0]
    }

    /// Probability (logistic loss) or value (squared loss) for a featurized example: the online
    /// path of shallow models. Deep models score in batches: see [`Scorer`].
    pub fn predict(&self, ex: &Example, scratch: &mut LearnScratch) -> Option<f32> {
        let learner = self.net.learner()?;
        Some(with_table!(self.table(), |t| learner.predict(t, ex, scratch)))
    }
}

/// Scores examples in batches through the network's step, with weights read from the model's
/// tables: how deep models (and any model) predict.
pub struct Scorer<'a> {
    model: &'a Model,
    batch: MiniBatch,
    weights: Vec<Vec<f32>>,
    row: Vec<f32>,
    scratch: Box<dyn std::any::Any + Send>,
    /// Per table, the keys of its dense chunks (empty for sparse tables).
    dense_keys: Vec<Vec<u64>>,
}

impl<'a> Scorer<'a> {
    /// A scorer of `model`.
    pub fn new(model: &'a Model) -> Self {
        let step = model.net.step();
        let dense_keys = step.tables().iter().map(|t| t.dense_keys()).collect();
        Scorer {
            model,
            batch: MiniBatch::new(),
            weights: Vec::new(),
            row: Vec::new(),
            scratch: step.scratch(),
            dense_keys,
        }
    }

    /// Adds an example; when the batch is full, scores it.
    pub fn push(&mut self, ex: &Example, on_score: &mut dyn FnMut(f32, f32, f32)) {
        self.batch.push(ex);
        if self.batch.len() >= SCORE_BATCH {
            self.flush(on_score);
        }
    }

    /// Scores the examples held (raw scores, with label and weight), in order.
    pub fn flush(&mut self, on_score: &mut dyn FnMut(f32, f32, f32)) {
        if self.batch.is_empty() {
            return;
        }
        let step = self.model.net.step();
        self.batch.seal_groups(step.key_groups(), |f| step.key_group(f));
        self.weights.resize_with(step.tables().len(), Vec::new);
        for (((spec, table), w), dense) in
            step.tables().iter().zip(&self.model.tables).zip(&mut self.weights).zip(&self.dense_keys)
        {
            gather(table.as_dyn(), spec, batch_keys(spec, &self.batch, dense), &mut self.row, w);
        }
        step.step(&self.batch, &self.weights, 0, None, self.scratch.as_mut(), on_score);
        self.batch.clear();
    }
}

/// The weights (`dim` floats) of `keys` of `table` into `out`, fresh rows for unseen keys.
pub fn gather(table: &dyn Table, spec: &TableSpec, keys: &[u64], row: &mut Vec<f32>, out: &mut Vec<f32>) {
    row.resize(table.row_len(), 0.0);
    out.clear();
    for &k in keys {
        table.read(k, row);
        out.extend_from_slice(&row[..spec.dim]);
    }
}
