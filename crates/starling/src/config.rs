//! The job config: one TOML file holds every option; command-line flags override it.
//!
//! Sections mirror the path of an example: `[data]` (where it comes from), `[features]` (how raw
//! values become keys), `[model]`, `[optimizer]`, `[train]`. Unknown keys are errors, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::{Loss, ModelKind, ModelSpec, Optimizer};
use starling_data::PipelineConfig;

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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Input files and bad-line policy.
    pub data: DataConfig,
    /// Feature pipeline: format, hashing, crosses, transforms, bias.
    pub features: PipelineConfig,
    /// Model family, size and loss.
    pub model: ModelConfig,
    /// Update rule and its hyperparameters (`name = "sgd" | "adagrad" | "ftrl" | "adam"`); unset
    /// hyperparameters take the optimizer's defaults.
    pub optimizer: Optimizer,
    /// Passes, threads, shuffling, seed, where to save.
    pub train: TrainConfig,
}

/// Where examples come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training files or directories (a directory means every data file in it).
    pub train: Vec<PathBuf>,
    /// Holdout files evaluated after training (and after each pass when `train.eval_each_pass`).
    pub test: Vec<PathBuf>,
}

/// Model family and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `lr`, `fm` or `ffm`.
    pub kind: ModelKind,
    /// Latent dimension of FM and FFM.
    pub k: usize,
    /// Latent weights start uniform in `[-init_scale, init_scale)`.
    pub init_scale: f32,
    /// `logistic` (labels 0/1 or -1/+1) or `squared` (real labels).
    pub loss: Loss,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { kind: ModelKind::Lr, k: 8, init_scale: 0.01, loss: Loss::Logistic }
    }
}

/// How training runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub passes: u32,
    /// Worker threads (Hogwild-style lock-free updates); 1 is deterministic for a fixed seed.
    pub threads: usize,
    /// Shuffle examples within a window of `shuffle_window` examples per thread.
    pub shuffle: bool,
    /// Examples held per thread for shuffling.
    pub shuffle_window: usize,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Evaluate the holdout after every pass, not only at the end.
    pub eval_each_pass: bool,
    /// Where to save the trained model (none: do not save).
    pub save: Option<PathBuf>,
    /// A saved model to continue training from (weights and optimizer state).
    pub init_model: Option<PathBuf>,
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
        }
    }
}

impl JobConfig {
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
    fn zero_passes_rejected() {
        let mut cfg = JobConfig::default();
        cfg.train.passes = 0;
        assert!(cfg.validate().unwrap_err().to_string().contains("train.passes"));
    }
}
