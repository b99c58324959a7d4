//! The job config: one TOML file holds every option; command-line flags override it.
//!
//! Sections mirror the path of an example: `[data]` (where it comes from), `[features]` (how raw
//! values become keys), `[model]`, `[optimizer]`, `[train]`. Unknown keys are errors, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::{Loss, ModelKind, ModelSpec, Optimizer};
use starling_data::PipelineConfig;
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
    /// Directory of binary caches of the parsed input: `starling train` and `tune` parse the text
    /// once into it and read the cache from then on (every pass, later runs); rebuilt when a file
    /// or a feature setting changes. Unset: no cache.
    pub cache_dir: Option<PathBuf>,
}

/// Model family and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model family.
    pub kind: ModelKind,
    /// Latent dimension of FM and FFM.
    pub k: usize,
    /// Latent weights start uniform in `[-init_scale, init_scale)`, a function of (seed, key), so
    /// threads and servers agree.
    pub init_scale: f32,
    /// The loss the model minimises.
    pub loss: Loss,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { kind: ModelKind::Lr, k: 8, init_scale: 0.01, loss: Loss::Logistic }
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
    /// gradients per key and pushes them, as parameter-server workers do. 0 picks 1 for `starling
    /// train` and 1000 for a cluster; set it explicitly for the same result in one process or many.
    pub batch_size: usize,
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
        }
    }
}

/// Mini-batch size a cluster uses when `train.batch_size = 0`.
pub const CLUSTER_BATCH_SIZE: usize = 1000;

/// What happens when a worker dies or goes silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerLoss {
    /// Stop the whole job with a message naming the worker.
    Fail,
    /// Go on without it (its remaining data is not trained on, and the report says so).
    Continue,
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
    /// On a lost worker: `"fail"` or `"continue"`; unset means continue under ASP, fail otherwise.
    pub on_worker_loss: Option<WorkerLoss>,
    /// Seconds between heartbeats of every process to the coordinator.
    pub heartbeat_secs: f64,
    /// A process silent this long is declared lost.
    pub heartbeat_timeout_secs: f64,
    /// Values on the wire as IEEE half floats (halves pull/push bytes; weights lose precision).
    pub f16: bool,
    /// Largest frame accepted, in MiB (checked before any allocation).
    pub max_frame_mib: usize,
    /// Network threads of each server.
    pub server_threads: usize,
    /// Under SSP and ASP, workers send the pull of their next batch before computing the current
    /// one. A prefetched read is one step older, so SSP then gates clocks one step tighter and
    /// reads stay within `staleness`; BSP never prefetches.
    pub prefetch: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            servers: 1,
            workers: 1,
            staleness: Staleness::Bounded(0),
            on_worker_loss: None,
            heartbeat_secs: 1.0,
            heartbeat_timeout_secs: 10.0,
            f16: false,
            max_frame_mib: 1024,
            server_threads: 2,
            prefetch: true,
        }
    }
}

impl ClusterConfig {
    /// Whether workers prefetch: asked for, and the staleness leaves room for a step-old read.
    pub fn prefetching(&self) -> bool {
        self.prefetch && self.staleness != Staleness::Bounded(0)
    }

    /// The bound the coordinator gates clock grants by: `staleness`, less the step a prefetched
    /// read already lags, so what workers read is never staler than `staleness`.
    pub fn gate(&self) -> Staleness {
        match self.staleness {
            Staleness::Bounded(s) if self.prefetching() => Staleness::Bounded(s - 1),
            other => other,
        }
    }

    /// The policy for lost workers, with the mode's default filled in.
    pub fn worker_loss(&self) -> WorkerLoss {
        self.on_worker_loss.unwrap_or(if self.staleness == Staleness::Unbounded {
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
    /// Directory of checkpoints (`step-NNNNNNNNNN` subdirectories); none: no periodic checkpoints.
    pub dir: Option<PathBuf>,
    /// Checkpoint every this many steps of the slowest worker (0: off).
    pub every_steps: u64,
    /// Checkpoint at least this often, in seconds (0: off).
    pub every_secs: u64,
    /// Complete checkpoints kept; older ones are deleted.
    pub keep: usize,
    /// Start from the newest complete checkpoint in `dir` when there is one.
    pub resume: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { dir: None, every_steps: 0, every_secs: 0, keep: 2, resume: true }
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
    /// Mini-batch size in effect: `train.batch_size`, or the default for a single process or a cluster.
    pub fn batch_size(&self, cluster: bool) -> usize {
        match self.train.batch_size {
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

    /// The model's shape; `num_fields` comes from the feature pipeline.
    pub fn model_spec(&self, num_fields: usize) -> ModelSpec {
        ModelSpec {
            kind: self.model.kind,
            k: if self.model.kind == ModelKind::Lr { 0 } else { self.model.k },
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
        if self.model.kind != ModelKind::Lr && (self.model.k == 0 || self.model.k > 1024) {
            return bad("model.k", "must be between 1 and 1024 for FM and FFM");
        }
        if !(self.model.init_scale.is_finite() && self.model.init_scale >= 0.0) {
            return bad("model.init_scale", "must be a finite, non-negative number");
        }
        if self.features.hash_bits > 40 {
            return bad("features.hash_bits", "must be at most 40 (0 keeps full 64-bit keys in a hash table)");
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
        if self.checkpoint.keep == 0 {
            return bad("checkpoint.keep", "must be at least 1");
        }
        self.optimizer.validate().map_err(|e| ConfigError::Invalid { field: "optimizer", message: e.to_string() })?;
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
        assert_eq!(cfg.cluster.worker_loss(), WorkerLoss::Fail);
        let cfg = JobConfig::from_toml("[cluster]\nstaleness = \"inf\"\n", "t").unwrap();
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
