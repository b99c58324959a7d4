//! The job config: one TOML file holds every option; command-line flags override it.
//!
//! Sections mirror the path of an example: `[data]` (where it comes from), `[features]` (how raw
//! values become keys), `[model]`, `[optimizer]`, `[train]`. Unknown keys are errors, so a typo
//! never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::graph::ready::{ready_graph, ReadyOptions};
use starling_core::graph::BlockConfig;
use starling_core::metrics::Metric;
use starling_core::nn::Activation;
use starling_core::{Loss, ModelKind, ModelSpec, Optimizer, ShallowKind};
use starling_data::{Format, NumericTransform, PipelineConfig};
use starling_ps::Staleness;

mod reference;
pub use reference::{commented_toml, reference_markdown};

/// Errors reading or checking a job config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML did not parse or named an unknown option.
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    /// An option has a value outside its domain.
    #[error("config option `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

/// The whole job: data, features, model, optimizer and training schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Where the examples come from.
    pub data: DataConfig,
    /// How input lines become keys: format, hashing, crosses, transforms, bias. Field names, for
    /// `crosses`: Criteo `I1`..`I13`, `C1`..`C26`; CSV its column names; VW its namespace
    /// letters; libFFM `0`..`n-1`; LibSVM one field `0` (details in input-formats.md).
    pub features: PipelineConfig,
    /// Model family, size and loss.
    pub model: ModelConfig,
    /// Update rule and its hyperparameters (`name = "sgd" | "adagrad" | "ftrl" | "adam"`); unset
    /// hyperparameters take the optimizer's defaults.
    pub optimizer: Optimizer,
    /// Passes, threads, shuffling, seed, where to save. Flags only on the command line:
    /// `--report FILE` (JSON of the run: examples/s, progressive and test metrics), `--quiet`,
    /// `--print-config`.
    pub train: TrainConfig,
    /// Parameter-server settings: servers, workers, consistency, heartbeats, wire format.
    pub cluster: ClusterConfig,
    /// Periodic checkpoints of a parameter-server job, and resuming from them.
    pub checkpoint: CheckpointConfig,
}

/// Where examples come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training files or directories (a directory means its data files; `_SUCCESS`, `.crc` and
    /// hidden files are skipped). `.gz` is read transparently; object store URLs (`s3://...`)
    /// in builds with the `object-store` feature.
    pub train: Vec<PathBuf>,
    /// Holdout files, scored after training (and after each pass with `train.eval_each_pass`)
    /// with logloss, AUC, RMSE and accuracy; `starling tune` ranks trials on them.
    pub test: Vec<PathBuf>,
    /// Validation files, scored after every pass when `train.patience` is set: training keeps
    /// the model of the best pass and stops when it stops improving (kept apart from `test`, so
    /// the test figure stays unbiased).
    pub valid: Vec<PathBuf>,
    /// Directory of binary caches of the parsed input: `starling train` and `tune` parse the text
    /// once into it and read the cache from then on (every pass, later runs); rebuilt when a file
    /// or a feature setting changes. Unset: no cache.
    pub cache_dir: Option<PathBuf>,
}

/// Model family and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model family: shallow (`lr`, `fm`, `ffm`), a ready deep model (`wide_deep`,
    /// `deepfm`, `dcn`, `dlrm`, `finalmlp`), or `graph`, the blocks of `[[model.blocks]]`.
    pub kind: ModelKind,
    /// Latent dimension of FM and FFM.
    pub k: usize,
    /// Latent weights and embeddings start uniform in `[-init_scale, init_scale)`, a function of
    /// (seed, key), so threads and servers agree.
    pub init_scale: f32,
    /// The loss the model minimises.
    pub loss: Loss,
    /// Deep models: embedding size per field.
    pub embedding_dim: usize,
    /// Deep models: hidden layer sizes of the MLP (FinalMLP: its first stream; DLRM: its top MLP).
    pub mlp: Vec<usize>,
    /// FinalMLP: hidden layer sizes of its second stream.
    pub mlp2: Vec<usize>,
    /// Deep models: dropout rate after every hidden layer, in `[0, 1)`.
    pub dropout: f32,
    /// Deep models: batch norm in every hidden layer.
    pub batch_norm: bool,
    /// Deep models: activation of hidden layers.
    pub activation: Activation,
    /// DCN: number of cross layers.
    pub cross_layers: usize,
    /// DCN: DCN-v2's matrix cross layers instead of DCN's vector ones.
    pub v2: bool,
    /// FinalMLP: heads of the bilinear fusion (divides both streams' last sizes).
    pub heads: usize,
    /// Deep models: one embedding table shared by every field (`shared`; keys are hashed with
    /// their field, so fields do not collide) or one per field (`per_field`).
    pub embedding_tables: EmbeddingTables,
    /// `kind = "graph"`: the model's blocks, each `{ name, block, input = [...], options }`
    /// (see models.md for the blocks and their options).
    pub blocks: Vec<BlockConfig>,
    /// `kind = "graph"`: the block whose output is the score (default: the last one).
    pub output: Option<String>,
    /// Deep models: the update rule of the dense layers (`[model.dense_optimizer]`, `name`
    /// required); the embeddings follow `[optimizer]`.
    #[serde(deserialize_with = "optimizer_with_name")]
    pub dense_optimizer: Optimizer,
    /// Ready deep models: numeric fields (`I1`, ..., or CSV columns) fed to the MLPs as a dense
    /// vector, each standardised by its mean and standard deviation on the training data,
    /// instead of through the embeddings and the wide part. Criteo and CSV columns need
    /// `features.numeric = "log1p"` or `"raw"` (under `log_bucket` a value is its bucket's 1).
    pub numeric_inputs: Vec<String>,
    /// Mean and standard deviation (`[mean, std]`) of every field a `numeric` block reads;
    /// computed from the first 1,000,000 training examples when absent, and kept with the model.
    pub numeric_stats: BTreeMap<String, [f32; 2]>,
}

/// An optimizer table that names its rule: unlike `[optimizer]`, whose rule defaults to AdaGrad,
/// a `[model.dense_optimizer]` of only `lr = ...` would silently replace Adam by AdaGrad.
fn optimizer_with_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Optimizer, D::Error> {
    let v = toml::Value::deserialize(d)?;
    if v.get("name").is_none() {
        return Err(serde::de::Error::custom(
            "[model.dense_optimizer] needs its `name` (sgd, adagrad, rowwise_adagrad, ftrl or adam); the default is adam",
        ));
    }
    Optimizer::deserialize(v).map_err(serde::de::Error::custom)
}

/// Where a deep model's embeddings live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingTables {
    /// One table for every field.
    #[default]
    Shared,
    /// One table per field.
    PerField,
}

impl Default for ModelConfig {
    fn default() -> Self {
        let ready = ReadyOptions::default();
        ModelConfig {
            kind: ModelKind::Lr,
            k: 8,
            init_scale: 0.01,
            loss: Loss::Logistic,
            embedding_dim: ready.embedding_dim,
            mlp: ready.mlp,
            mlp2: ready.mlp2,
            dropout: ready.dropout,
            batch_norm: ready.batch_norm,
            activation: ready.activation,
            cross_layers: ready.cross_layers,
            v2: ready.v2,
            heads: ready.heads,
            embedding_tables: EmbeddingTables::Shared,
            blocks: Vec::new(),
            output: None,
            dense_optimizer: Optimizer::adam_default(),
            numeric_inputs: Vec::new(),
            numeric_stats: BTreeMap::new(),
        }
    }
}

impl ModelConfig {
    /// The ready models' options.
    pub fn ready_options(&self) -> ReadyOptions {
        ReadyOptions {
            embedding_dim: self.embedding_dim,
            mlp: self.mlp.clone(),
            mlp2: self.mlp2.clone(),
            dropout: self.dropout,
            batch_norm: self.batch_norm,
            activation: self.activation,
            cross_layers: self.cross_layers,
            v2: self.v2,
            heads: self.heads,
            numeric: self.numeric_inputs.clone(),
        }
    }

    /// The fields the model's `numeric` blocks read, in block order.
    pub fn numeric_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in self.graph().unwrap_or_default().iter().filter(|b| b.block == "numeric") {
            if let Some(starling_core::graph::OptValue::List(items)) = b.options.get("fields") {
                for i in items {
                    if let starling_core::graph::OptValue::Str(f) = i {
                        if !out.contains(f) {
                            out.push(f.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// The blocks of a deep model: the ready model's graph, or `blocks` for `kind = "graph"`;
    /// `None` for the shallow kinds.
    pub fn graph(&self) -> Option<Vec<BlockConfig>> {
        match self.kind {
            ModelKind::Graph => Some(self.blocks.clone()),
            kind => ready_graph(kind, &self.ready_options()),
        }
    }
}

/// How training runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training data (each re-reads the input; a resumed model continues the count).
    pub passes: u32,
    /// Hogwild threads (lock-free updates), each reading its own byte range of the input; 1 is
    /// deterministic for a fixed seed.
    pub threads: usize,
    /// Shuffle examples within a window of `shuffle_window` examples per thread; the order
    /// depends only on (seed, pass, thread).
    pub shuffle: bool,
    /// Examples held per thread for shuffling.
    pub shuffle_window: usize,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Evaluate the holdout after every pass, not only at the end.
    pub eval_each_pass: bool,
    /// Where to write the model file (unset: not saved). Checked writable, its directory created,
    /// before training; the model is saved before the holdout is scored. A cluster job writes a
    /// checkpoint directory here.
    pub save: Option<PathBuf>,
    /// A model file to continue training from, weights and optimizer state (same model, features
    /// and optimizer kind; hyperparameters may change).
    pub init_model: Option<PathBuf>,
    /// Examples per mini-batch: 1 learns online (VW style); more pulls a batch's weights, sums its
    /// gradients per key and pushes them, as parameter-server workers do. 0 picks, for shallow
    /// models, 1 for `starling train` and 100 for a cluster, and for deep models (which always
    /// train in mini-batches) 256 per step split over the workers (128 each for 2); set it
    /// explicitly for the same batches in one process or many.
    pub batch_size: usize,
    /// Early stopping: after every pass the validation set (`data.valid`) is scored; training
    /// stops after `patience` passes in a row without a better `monitor`, and the model of the
    /// best pass is the one kept and saved. 0: off.
    pub patience: u32,
    /// The validation metric early stopping watches.
    pub monitor: Metric,
    /// After a pass that does not improve the validation metric, every learning rate is divided
    /// by this factor (the BARS protocol uses 10); 1: never. Needs `data.valid`.
    pub lr_decay_on_plateau: f32,
    /// Mini-batch training: every table's step size rises linearly from `1 / warmup_steps` of
    /// its own to all of it over the first `warmup_steps` steps (0: no warm-up), as large-batch
    /// training of deep models usually starts.
    pub warmup_steps: u64,
    /// Mini-batch training with a validation set: score it also every this many training
    /// examples within a pass, each score counting towards `patience` and the plateau (0: after
    /// every pass only).
    pub eval_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            passes: 1,
            threads: 1,
            shuffle: false,
            shuffle_window: 100_000,
            seed: 42,
            eval_each_pass: false,
            save: None,
            init_model: None,
            batch_size: 0,
            patience: 0,
            monitor: Metric::Auc,
            lr_decay_on_plateau: 1.0,
            warmup_steps: 0,
            eval_every: 0,
        }
    }
}

/// Mini-batch size a cluster uses for shallow models when `train.batch_size = 0`. A key's
/// gradients within a batch are summed into one optimizer step, so a row seen in many examples of
/// a batch takes one step where online learning takes many: FM's latent factors, grown from a
/// small init by steps that feed on each other, learn far less at 1000 (logloss 0.544 against
/// online 0.4995 on 1M generated rows, 2 workers) and as well as online at 100 (0.4997).
pub const CLUSTER_BATCH_SIZE: usize = 100;
/// Default mini-batch of deep models, in one process or many: large enough for the dense layers'
/// matrix products to run at speed, small enough to take many steps per pass.
pub const DEEP_BATCH_SIZE: usize = 256;

/// What happens when a worker dies or goes silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerLoss {
    /// Roll every table back to the last checkpoint's cut and go on once a replacement (started
    /// by the launcher or the orchestrator) has registered; a restart of `max_restarts`.
    Restart,
    /// Stop the whole job with a message naming the worker.
    Fail,
    /// Go on without it (its remaining data is not trained on, and the report says so).
    Continue,
}

/// The consistency rule of a deep model's dense layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DenseRule {
    /// Synchronous under BSP (the Spark style: one averaged update per step), as the sparse rows
    /// otherwise.
    #[default]
    Auto,
    /// Like the sparse rows: each worker's push is applied as it comes, under `staleness`.
    Staleness,
    /// Synchronous: the servers average one step's pushes of every live worker and apply them
    /// once; with `staleness = "inf"` for the sparse rows this is the hybrid mode.
    Sync,
}

impl std::str::FromStr for DenseRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DenseRule::Auto),
            "staleness" => Ok(DenseRule::Staleness),
            "sync" => Ok(DenseRule::Sync),
            _ => Err(format!("expected \"auto\", \"staleness\" or \"sync\", got {s:?}")),
        }
    }
}

/// Parameter-server settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Server processes (`starling launch` starts this many unless `--servers` says otherwise).
    pub servers: usize,
    /// Worker processes.
    pub workers: usize,
    /// Steps a worker may run ahead of the slowest one: 0 is BSP, N is SSP, `"inf"` is ASP.
    #[serde(with = "staleness_serde")]
    #[schemars(schema_with = "staleness_serde::schema")]
    pub staleness: Staleness,
    /// Dense layers of deep models: `"sync"` (the servers average one step's pushes of every live
    /// worker and apply them once; with `staleness = "inf"`, the hybrid mode), `"staleness"` (as
    /// the sparse rows), or `"auto"`: sync under BSP, as the sparse rows otherwise.
    pub dense: DenseRule,
    /// On a lost worker: `"restart"`, `"fail"` or `"continue"`; unset means restart while
    /// `max_restarts` allows, else continue under ASP and fail otherwise.
    pub on_worker_loss: Option<WorkerLoss>,
    /// Lost processes (servers, workers) the job replaces, rolling back to the last checkpoint
    /// each time, before it fails naming what died; 0 fails at the first loss.
    pub max_restarts: u32,
    /// Seconds between heartbeats of every process to the coordinator.
    pub heartbeat_secs: f64,
    /// A process silent this long is declared lost.
    pub heartbeat_timeout_secs: f64,
    /// Values on the wire as IEEE half floats (halves pull/push bytes; weights lose precision).
    pub f16: bool,
    /// Keys on the wire as varints of their distances: about 2-3 bytes a key instead of 8 when
    /// keys are folded to 24 bits or fewer (`features.hash_bits`); up to 10 for full 64-bit hashes.
    pub delta_keys: bool,
    /// Largest frame accepted, in MiB (checked before any allocation).
    pub max_frame_mib: usize,
    /// Network threads of each server.
    pub server_threads: usize,
    /// TLS on every connection of the job: this process's certificate chain (PEM). With
    /// `tls_key` and `tls_ca`; `starling launch` hands all three to its servers and workers, and
    /// other servers and workers take theirs from `--tls-cert`/`STARLING_TLS_CERT` and the like.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every certificate of the job: peers are checked against it.
    pub tls_ca: Option<PathBuf>,
    /// Under SSP and ASP, workers send the pull of their next batch before computing the current
    /// one. A prefetched read is one step older, so SSP then gates clocks one step tighter and
    /// reads stay within `staleness`; BSP never prefetches.
    pub prefetch: bool,
    /// Elastic workers (SSP and ASP only): the training input is cut into `input_pieces` that
    /// the coordinator hands to whichever worker asks next, so workers may join the running job
    /// (a `starling worker` started at any time takes input not yet read) and leave it (SIGTERM:
    /// the rest of its piece goes to the others; a lost worker's too, from its last step).
    pub elastic: bool,
    /// Pieces an elastic job's input is cut into; 0: 8 per worker `cluster.workers` names.
    pub input_pieces: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            servers: 1,
            workers: 1,
            staleness: Staleness::Bounded(0),
            dense: DenseRule::Auto,
            on_worker_loss: None,
            max_restarts: 3,
            heartbeat_secs: 1.0,
            heartbeat_timeout_secs: 10.0,
            f16: false,
            delta_keys: false,
            max_frame_mib: 1024,
            server_threads: 2,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            prefetch: true,
            elastic: false,
            input_pieces: 0,
        }
    }
}

impl ClusterConfig {
    /// Whether the job is BSP (staleness 0).
    pub fn bsp(&self) -> bool {
        self.staleness == Staleness::Bounded(0)
    }

    /// Whether workers prefetch: asked for, and the staleness leaves room for a step-old read.
    pub fn prefetching(&self) -> bool {
        self.prefetch && !self.bsp()
    }

    /// The bound the coordinator gates clock grants by: `staleness`, less the step a prefetched
    /// read already lags, so what workers read is never staler than `staleness`.
    pub fn gate(&self) -> Staleness {
        match self.staleness {
            Staleness::Bounded(s) if self.prefetching() => Staleness::Bounded(s - 1),
            other => other,
        }
    }

    /// Whether dense layers are synchronous tables, with `auto` resolved.
    pub fn dense_sync(&self) -> bool {
        match self.dense {
            DenseRule::Auto => self.bsp(),
            DenseRule::Staleness => false,
            DenseRule::Sync => true,
        }
    }

    /// Pieces an elastic job's input is cut into, with the default filled in.
    pub fn pieces(&self) -> usize {
        if self.input_pieces > 0 {
            self.input_pieces
        } else {
            8 * self.workers
        }
    }

    /// The job's TLS files, when it has TLS.
    pub fn tls_files(&self) -> Option<starling_ps::TlsFiles> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Some(starling_ps::TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() })
            }
            _ => None,
        }
    }

    /// The policy for lost workers, with the mode's default filled in.
    pub fn worker_loss(&self) -> WorkerLoss {
        self.on_worker_loss.unwrap_or(if self.max_restarts > 0 {
            WorkerLoss::Restart
        } else if self.staleness == Staleness::Unbounded {
            WorkerLoss::Continue
        } else {
            WorkerLoss::Fail
        })
    }
}

/// Checkpoints of a parameter-server job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Directory of checkpoints (`step-NNNNNNNNNN` subdirectories), a local path or, with the
    /// `object-store` build feature, an object store URL (`s3://bucket/ck`, `gs://`, `az://`,
    /// `hdfs://`); none: no periodic checkpoints.
    pub dir: Option<PathBuf>,
    /// Checkpoint every this many steps of the slowest worker (0: off).
    pub every_steps: u64,
    /// Checkpoint at least this often, in seconds (0: off).
    pub every_secs: u64,
    /// Complete checkpoints kept; older ones are deleted.
    pub keep: usize,
    /// Start from the newest complete checkpoint in `dir` when there is one.
    pub resume: bool,
    /// When a checkpoint cannot be written (a full disk): `"continue"` training with the previous
    /// checkpoint intact, or `"fail"` the job. The one holding the job's model (`train.save`, or
    /// the final checkpoint when there is no `train.save`) always fails the job.
    pub on_error: OnCheckpointError,
}

/// What a periodic checkpoint that cannot be written does to the job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnCheckpointError {
    /// Say so, keep the previous checkpoint, and train on.
    #[default]
    Continue,
    /// End the job with the error; the previous checkpoint is intact for a resume.
    Fail,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: None,
            every_steps: 0,
            every_secs: 0,
            keep: 2,
            resume: true,
            on_error: OnCheckpointError::Continue,
        }
    }
}

/// `staleness` in TOML: a step count, or the string `"inf"`.
mod staleness_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use starling_ps::Staleness;

    pub fn serialize<S: Serializer>(s: &Staleness, ser: S) -> Result<S::Ok, S::Error> {
        match s {
            Staleness::Bounded(n) => ser.serialize_u32(*n),
            Staleness::Unbounded => ser.serialize_str("inf"),
        }
    }

    /// A step count or `"inf"`.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "anyOf": [{ "type": "integer", "minimum": 0 }, { "const": "inf" }] })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Staleness, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(de)? {
            Raw::N(n) => u32::try_from(n)
                .map(Staleness::Bounded)
                .map_err(|_| serde::de::Error::custom(format!("staleness must be 0 or more, got {n}"))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JobConfig {
    /// Mini-batch size of each of `workers` workers: `train.batch_size`, or the default for a
    /// single process or a cluster. A deep model's default step learns from `DEEP_BATCH_SIZE`
    /// examples in all, split over the workers, so its synchronous layers take as many steps of
    /// the same size however many workers share them.
    pub fn batch_size(&self, cluster: bool, workers: usize) -> usize {
        match self.train.batch_size {
            0 if self.model.kind.shallow().is_none() => (DEEP_BATCH_SIZE / workers.max(1)).max(1),
            0 if cluster => CLUSTER_BATCH_SIZE,
            0 => 1,
            n => n,
        }
    }

    /// Reads a job config from a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses a job config from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })
    }

    /// The config as TOML, every option written out (the config reference a user can edit).
    pub fn to_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("a JobConfig always serialises");
        shortest_floats(&mut value);
        toml::to_string_pretty(&value).expect("a TOML value always serialises")
    }

    /// The shallow model's shape (a deep model's kind reads as LR: callers check
    /// [`ModelKind::shallow`] first); `num_fields` comes from the feature pipeline.
    pub fn model_spec(&self, num_fields: usize) -> ModelSpec {
        let kind = self.model.kind.shallow().unwrap_or(ShallowKind::Lr);
        ModelSpec {
            kind,
            k: if kind == ShallowKind::Lr { 0 } else { self.model.k },
            num_fields,
            init_scale: self.model.init_scale,
            seed: self.train.seed,
        }
    }

    /// Checks what serde cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: &str| Err(ConfigError::Invalid { field, message: message.to_string() });
        if self.train.passes == 0 {
            return bad("train.passes", "must be at least 1");
        }
        if self.train.threads == 0 || self.train.threads > 1024 {
            return bad("train.threads", "must be between 1 and 1024");
        }
        if self.train.shuffle && self.train.shuffle_window == 0 {
            return bad("train.shuffle_window", "must be at least 1 when shuffling");
        }
        if matches!(self.model.kind, ModelKind::Fm | ModelKind::Ffm) && (self.model.k == 0 || self.model.k > 1024) {
            return bad("model.k", "must be between 1 and 1024 for FM and FFM");
        }
        if !(self.model.init_scale.is_finite() && self.model.init_scale >= 0.0) {
            return bad("model.init_scale", "must be a finite, non-negative number");
        }
        if self.features.hash_bits > 40 {
            return bad("features.hash_bits", "must be at most 40 (0 keeps full 64-bit keys in a hash table)");
        }
        if !self.model.numeric_inputs.is_empty() {
            if self.model.kind.shallow().is_some() || self.model.kind == ModelKind::Graph {
                return bad(
                    "model.numeric_inputs",
                    "is read by the ready deep models; LR, FM and FFM take numeric values as features, and a graph lists them in a `numeric` block",
                );
            }
            if self.features.numeric == NumericTransform::LogBucket
                && matches!(self.features.format, Format::Criteo | Format::Csv | Format::Parquet)
            {
                return bad(
                    "model.numeric_inputs",
                    "needs features.numeric = \"log1p\" or \"raw\": under \"log_bucket\" a numeric column's value is 1 and its bucket is the key",
                );
            }
        }
        for (field, [mean, std]) in &self.model.numeric_stats {
            if !(mean.is_finite() && std.is_finite() && *std > 0.0) {
                return bad(
                    "model.numeric_stats",
                    &format!("{field}: expected [mean, std] with a finite mean and std > 0"),
                );
            }
        }
        if self.train.batch_size > 10_000_000 {
            return bad("train.batch_size", "must be at most 10000000");
        }
        if self.cluster.servers == 0 || self.cluster.servers > 4096 {
            return bad("cluster.servers", "must be between 1 and 4096");
        }
        if self.cluster.workers == 0 || self.cluster.workers > 4096 {
            return bad("cluster.workers", "must be between 1 and 4096");
        }
        let c = &self.cluster;
        let tls_set = [&c.tls_cert, &c.tls_key, &c.tls_ca].iter().filter(|p| p.is_some()).count();
        if tls_set != 0 && tls_set != 3 {
            return bad("cluster.tls_cert", "TLS needs all three of cluster.tls_cert, tls_key and tls_ca");
        }
        if self.cluster.on_worker_loss == Some(WorkerLoss::Restart) && self.cluster.max_restarts == 0 {
            return bad("cluster.on_worker_loss", "\"restart\" needs cluster.max_restarts of at least 1");
        }
        let (hb, to) = (self.cluster.heartbeat_secs, self.cluster.heartbeat_timeout_secs);
        if !(hb > 0.0 && hb.is_finite() && to.is_finite() && to >= 2.0 * hb) {
            return bad(
                "cluster.heartbeat_timeout_secs",
                "heartbeats need a positive period and a timeout of at least two periods",
            );
        }
        if self.cluster.max_frame_mib == 0 || self.cluster.max_frame_mib > 4095 {
            return bad("cluster.max_frame_mib", "must be between 1 and 4095");
        }
        if self.cluster.server_threads == 0 {
            return bad("cluster.server_threads", "must be at least 1");
        }
        if self.cluster.elastic {
            if self.cluster.bsp() {
                return bad(
                    "cluster.elastic",
                    "needs SSP or ASP (cluster.staleness > 0 or \"inf\"): under BSP every step waits for a fixed set of workers",
                );
            }
            if self.data.cache_dir.is_some() {
                return bad(
                    "cluster.elastic",
                    "reads its pieces from the input itself; unset data.cache_dir (a cache holds one worker's fixed slice)",
                );
            }
        }
        if self.cluster.input_pieces > 1 << 20 {
            return bad("cluster.input_pieces", "must be at most 1048576");
        }
        if !(self.train.lr_decay_on_plateau.is_finite() && self.train.lr_decay_on_plateau >= 1.0) {
            return bad("train.lr_decay_on_plateau", "must be a factor of at least 1 (1: never decay)");
        }
        if (self.train.patience > 0 || self.train.lr_decay_on_plateau > 1.0 || self.train.eval_every > 0)
            && self.data.valid.is_empty()
        {
            return bad(
                "data.valid",
                "early stopping (train.patience), train.lr_decay_on_plateau and train.eval_every watch a validation set: give its files",
            );
        }
        if self.checkpoint.keep == 0 {
            return bad("checkpoint.keep", "must be at least 1");
        }
        self.optimizer.validate().map_err(|e| ConfigError::Invalid { field: "optimizer", message: e.to_string() })?;
        if self.model.kind.shallow().is_none() {
            self.validate_deep()?;
        }
        Ok(())
    }

    /// The deep models' options that a graph build cannot see wrong.
    fn validate_deep(&self) -> Result<(), ConfigError> {
        let bad = |field, message: String| Err(ConfigError::Invalid { field, message });
        let m = &self.model;
        if m.kind == ModelKind::Graph && m.blocks.is_empty() {
            return bad(
                "model.blocks",
                "kind = \"graph\" needs its blocks: one [[model.blocks]] table per block".into(),
            );
        }
        if m.kind != ModelKind::Graph && !m.blocks.is_empty() {
            return bad("model.blocks", format!("is only read with kind = \"graph\", but kind = \"{}\"", m.kind));
        }
        if m.embedding_dim == 0 || m.embedding_dim > 4096 {
            return bad("model.embedding_dim", format!("= {}: must be between 1 and 4096", m.embedding_dim));
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return bad("model.dropout", format!("= {}: must be a rate in [0, 1)", m.dropout));
        }
        for (field, sizes) in [("model.mlp", &m.mlp), ("model.mlp2", &m.mlp2)] {
            if sizes.iter().any(|&s| s == 0 || s > 1 << 16) {
                return bad(field, format!("= {sizes:?}: every size must be between 1 and 65536"));
            }
        }
        if matches!(m.kind, ModelKind::FinalMlp) {
            let (a, b) = (m.mlp.last().copied().unwrap_or(0), m.mlp2.last().copied().unwrap_or(0));
            if m.mlp.is_empty() || m.mlp2.is_empty() {
                return bad("model.mlp", "FinalMLP needs both streams: model.mlp and model.mlp2 non-empty".into());
            }
            if m.heads == 0 || a % m.heads != 0 || b % m.heads != 0 {
                return bad(
                    "model.heads",
                    format!("= {}: must divide the last sizes of both streams ({a} and {b})", m.heads),
                );
            }
        }
        if m.kind == ModelKind::Dcn && m.cross_layers == 0 {
            return bad("model.cross_layers", "must be at least 1".into());
        }
        self.model
            .dense_optimizer
            .validate()
            .map_err(|e| ConfigError::Invalid { field: "model.dense_optimizer", message: e.to_string() })?;
        Ok(())
    }
}

/// Every option is an f32, which TOML would print widened (`0.05` as `0.05000000074505806`):
/// print the shortest decimal that reads back as the same f32 instead.
fn shortest_floats(v: &mut toml::Value) {
    match v {
        toml::Value::Float(x) => *x = (*x as f32).to_string().parse().unwrap_or(*x),
        toml::Value::Array(a) => a.iter_mut().for_each(shortest_floats),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| shortest_floats(v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = JobConfig::default();
        let back = JobConfig::from_toml(&cfg.to_toml(), "test").unwrap();
        assert_eq!(cfg, back);
    }

    #[test]
    fn unknown_option_is_an_error_naming_it() {
        let err = JobConfig::from_toml("[train]\npasess = 3\n", "job.toml").unwrap_err().to_string();
        assert!(err.contains("job.toml") && err.contains("pasess"), "{err}");
    }

    #[test]
    fn optimizer_takes_defaults_for_unset_hyperparameters() {
        let cfg = JobConfig::from_toml("[optimizer]\nname = \"ftrl\"\nl1 = 2.0\n", "t").unwrap();
        assert!(matches!(cfg.optimizer, Optimizer::Ftrl { l1, beta, .. } if l1 == 2.0 && beta == 1.0));
    }

    #[test]
    fn staleness_reads_numbers_and_inf() {
        let cfg = JobConfig::from_toml("[cluster]\nstaleness = 3\n", "t").unwrap();
        assert_eq!(cfg.cluster.staleness, Staleness::Bounded(3));
        assert_eq!(cfg.cluster.worker_loss(), WorkerLoss::Restart);
        let cfg = JobConfig::from_toml("[cluster]\nstaleness = 3\nmax_restarts = 0\n", "t").unwrap();
        assert_eq!(cfg.cluster.worker_loss(), WorkerLoss::Fail);
        let cfg = JobConfig::from_toml("[cluster]\nstaleness = \"inf\"\nmax_restarts = 0\n", "t").unwrap();
        assert_eq!(cfg.cluster.staleness, Staleness::Unbounded);
        assert_eq!(cfg.cluster.worker_loss(), WorkerLoss::Continue);
        assert_eq!(JobConfig::from_toml(&cfg.to_toml(), "t").unwrap(), cfg);
        let err = JobConfig::from_toml("[cluster]\nstaleness = -2\n", "t").unwrap_err().to_string();
        assert!(err.contains("staleness"), "{err}");
    }

    #[test]
    fn zero_passes_rejected() {
        let mut cfg = JobConfig::default();
        cfg.train.passes = 0;
        assert!(cfg.validate().unwrap_err().to_string().contains("train.passes"));
    }
}
