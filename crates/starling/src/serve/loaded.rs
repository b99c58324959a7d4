//! The model being served, and the watcher that swaps in a newer one when its file or
//! checkpoint directory changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use starling_data::{Format, Pipeline};

use super::rows::{csv_header, RowReader};
use super::ServeMetrics;
use crate::model::Model;
use crate::model_file;

/// A model with what reads its rows, and the version number it is served under.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// Reads request rows as the model's training input was read.
    pub rows: RowReader,
    /// 1 for the model the server started with, one more for each reload.
    pub version: u64,
    /// The model file or checkpoint it was loaded from.
    pub source: PathBuf,
}

impl Loaded {
    /// Loads the model `path` names (a model file, a checkpoint, or a directory of them: its
    /// newest complete checkpoint).
    pub fn load(path: &Path, version: u64) -> Result<Loaded, String> {
        let source = model_file::resolve(path).map_err(|e| crate::error_chain(&e))?;
        let model = model_file::load(&source).map_err(|e| crate::error_chain(&e))?;
        let config = &model.job.features;
        let header = (config.format == Format::Csv).then(|| csv_header(config, base_fields(&model)));
        let pipeline = Pipeline::new(config, header.as_deref().map(str::as_bytes))
            .map_err(|e| format!("{}: reading its rows: {e}", source.display()))?;
        if pipeline.field_names() != model.fields.names {
            return Err(format!(
                "{}: its input's fields cannot be rebuilt from the model (the pipeline gives {:?}, the model has {:?})",
                source.display(),
                pipeline.field_names(),
                model.fields.names
            ));
        }
        let rows = RowReader::new(pipeline).map_err(|e| format!("{}: {e}", source.display()))?;
        Ok(Loaded { model, rows, version, source })
    }
}

/// The model's fields that its input has: without the crosses and the bias, which come last.
fn base_fields(model: &Model) -> &[String] {
    let derived = model.job.features.crosses.len() + usize::from(model.fields.bias.is_some());
    &model.fields.names[..model.fields.names.len().saturating_sub(derived)]
}

/// What identifies one state of a model path: when it changes, there may be a new model.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    /// The file, or the checkpoint a directory resolves to.
    file: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let file = if path.is_dir() { model_file::resolve(path).ok()? } else { path.to_path_buf() };
    // A checkpoint directory is complete once its manifest is written, last.
    let probe = if file.is_dir() { file.join("manifest.toml") } else { file.clone() };
    let meta = std::fs::metadata(&probe).ok()?;
    Some(Stamp { file, modified: meta.modified().ok(), len: meta.len() })
}

/// Polls `path` every `every` and serves a newer model once it loads; one that does not load
/// is reported and the current one kept. Runs until the process ends.
pub fn watch(path: PathBuf, every: Duration, current: Arc<Mutex<Arc<Loaded>>>, metrics: Arc<ServeMetrics>) {
    let mut seen = stamp(&path);
    let mut version = current.lock().unwrap_or_else(|p| p.into_inner()).version;
    loop {
        std::thread::sleep(every);
        let now = stamp(&path);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        match Loaded::load(&path, version + 1) {
            Ok(next) => {
                version += 1;
                crate::errln!("serving {} as model version {version}", next.source.display());
                metrics.loaded(&next);
                *current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            }
            Err(e) => {
                metrics.load_failures.inc();
                crate::errln!("keeping model version {version}: the changed model did not load: {e}");
            }
        }
    }
}
