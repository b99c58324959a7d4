//! `starling quickstart`: the README's main job, end to end on generated data.
//!
//! It generates a Criteo-like data set whose hidden true model has pairwise interactions, trains
//! LR (the baseline) and FM on it, saves the FM model, loads it back and predicts the test rows,
//! and checks the reloaded model scores exactly as the trained one did.

use std::path::{Path, PathBuf};

use starling_core::ModelKind;
use starling_data::synth::{self, SynthConfig, SynthError, SynthFormat, SynthReport};
use starling_data::Format;

use crate::config::JobConfig;
use crate::model_file::{self, ModelFileError};
use crate::predict;
use crate::progress::Progress;
use crate::trainer::{self, TrainError};

/// Why the quickstart stopped.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    /// Generating the data failed.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Saving or loading the model failed.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// Predicting with the saved model failed.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// Writing predictions failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The reloaded model did not reproduce the trained model's predictions.
    #[error("the saved model predicts differently from the trained one (logloss {saved} vs {trained})")]
    Mismatch { saved: f64, trained: f64 },
}

/// Generates synthetic data with a progress line per 10% of rows.
pub fn generate(cfg: &SynthConfig, dir: &Path, quiet: bool) -> Result<SynthReport, SynthError> {
    let progress = Progress::counter("gen", "rows", quiet);
    let mut last = 0u64;
    let r = synth::generate(cfg, dir, &mut |rows| {
        progress.add(rows - last, 0.0);
        last = rows;
    });
    progress.finish();
    r
}

/// The job the quickstart trains: Criteo TSV, folded to 2^22 rows, AdaGrad, one pass.
pub fn job(dir: &Path, kind: ModelKind) -> JobConfig {
    let mut job = JobConfig::default();
    job.data.train = vec![dir.join("train.tsv")];
    job.data.test = vec![dir.join("test.tsv")];
    job.features.format = Format::Criteo;
    job.features.hash_bits = 22;
    job.model.kind = kind;
    job.model.k = 8;
    job
}

/// Runs the quickstart in `dir` with `rows` training rows.
pub fn run(dir: &Path, rows: u64) -> Result<(), QuickstartError> {
    let cfg = SynthConfig {
        train_rows: rows,
        test_rows: (rows / 4).max(1),
        seed: 42,
        hash_bits: 22,
        formats: vec![SynthFormat::Criteo],
        nonlinear: 0.0,
    };
    crate::outln!(
        "1. generating {} train / {} test Criteo-like rows in {}",
        cfg.train_rows,
        cfg.test_rows,
        dir.display()
    );
    let data = generate(&cfg, dir, false)?;

    let mut results = Vec::new();
    for (step, kind) in [(2, ModelKind::Lr), (3, ModelKind::Fm)] {
        crate::outln!("{step}. training {kind} (AdaGrad, one pass, 2^22 hashed features)");
        let job = job(dir, kind);
        let (model, rep) = trainer::train(&job, false)?;
        let test = rep.test.expect("the quickstart job has test data");
        results.push((kind, rep.train_examples as f64 / rep.train_seconds.max(1e-9), test, model));
    }

    let (_, _, fm_test, fm) = results.last().expect("two models trained");
    let model_path = dir.join("fm.model");
    model_file::save(fm, &model_path)?;
    crate::outln!("4. saved the FM model to {}", model_path.display());
    let loaded = model_file::load(&model_path)?;
    let pred_path = dir.join("predictions.txt");
    let io = |source| QuickstartError::Io { path: pred_path.clone(), source };
    let mut w = starling_fs::AtomicFile::create(&pred_path).map_err(io)?;
    let again = predict::predict_to(&loaded, &[dir.join("test.tsv")], 0, &mut w)?.summary;
    w.commit().map_err(io)?;
    if again.logloss != fm_test.logloss {
        return Err(QuickstartError::Mismatch { saved: again.logloss, trained: fm_test.logloss });
    }
    crate::outln!(
        "5. loaded it back and wrote {} predictions to {} (identical to the trained model's)",
        again.count,
        pred_path.display()
    );

    crate::outln!();
    crate::outln!("{:<22} {:>12} {:>10} {:>14}", "model", "test logloss", "test AUC", "examples/s");
    for (kind, speed, t, _) in &results {
        crate::outln!(
            "{:<22} {:>12.5} {:>10.5} {:>14.0}",
            kind.to_string(),
            t.logloss,
            t.auc.unwrap_or(f64::NAN),
            speed
        );
    }
    crate::outln!("{:<22} {:>12.5} {:>10.5}", "true model (floor)", data.oracle_logloss, data.oracle_auc);
    crate::outln!("{:<22} {:>12.5} {:>10}", "constant prediction", data.constant_logloss, "0.5");
    Ok(())
}
