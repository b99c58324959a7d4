//! A trial run as a job on a local cluster: `starling launch` in a child process (coordinator,
//! servers, workers), its job file, log, report and model in the trial's own directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use starling_core::metrics::Summary;

use crate::config::JobConfig;

use super::space::Metric;
use super::trial::Outcome;

/// The files of one launched trial.
pub struct TrialDir {
    /// `OUT/trials/N`.
    pub dir: PathBuf,
}

impl TrialDir {
    /// The directory of trial number `n` (from 1) under `out`.
    pub fn new(out: &Path, n: usize) -> Self {
        TrialDir { dir: out.join("trials").join(n.to_string()) }
    }

    /// The job file the cluster ran.
    pub fn job(&self) -> PathBuf {
        self.dir.join("job.toml")
    }

    /// The merged log of every process of the cluster.
    pub fn log(&self) -> PathBuf {
        self.dir.join("launch.log")
    }

    /// The coordinator's JSON report.
    pub fn report(&self) -> PathBuf {
        self.dir.join("report.json")
    }

    /// The trained model (a distributed checkpoint directory).
    pub fn model(&self) -> PathBuf {
        self.dir.join("model")
    }
}

/// The part of the coordinator's report a trial needs.
#[derive(Deserialize)]
struct Report {
    train_examples: u64,
    test: Option<TestReport>,
}

/// Holdout metrics; the report writes a non-finite value (a diverged model) as `null`.
#[derive(Deserialize)]
struct TestReport {
    count: u64,
    logloss: Option<f64>,
    auc: Option<f64>,
    rmse: Option<f64>,
    accuracy: Option<f64>,
}

/// Runs `job` with `starling launch` in `trial`'s directory; workers cache their slices of the
/// text in `cache_dir`, shared by every trial. Returns how it ended and the examples it trained.
pub fn run(job: &JobConfig, trial: &TrialDir, cache_dir: &Path, metric: Metric) -> (Outcome, u64) {
    match launch(job, trial, cache_dir) {
        Ok((s, _)) if !metric.value(&s).is_finite() => {
            (Outcome::Failed(format!("the holdout {} is not finite (diverged)", metric.name())), 0)
        }
        Ok((summary, examples)) => (Outcome::Done(summary), examples),
        Err(reason) => (Outcome::Failed(reason), 0),
    }
}

fn launch(job: &JobConfig, trial: &TrialDir, cache_dir: &Path) -> Result<(Summary, u64), String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(&trial.dir).map_err(|e| io(&trial.dir, e))?;
    let mut job = job.clone();
    job.data.cache_dir = Some(cache_dir.to_path_buf());
    job.train.save = Some(trial.model());
    starling_fs::write_file(&trial.job(), job.to_toml().as_bytes()).map_err(|e| io(&trial.job(), e))?;
    let log = std::fs::File::create(trial.log()).map_err(|e| io(&trial.log(), e))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding the starling binary: {e}"))?;
    let status = Command::new(exe)
        .arg("launch")
        .arg("-q")
        .arg("-c")
        .arg(trial.job())
        .arg("--report")
        .arg(trial.report())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| io(&trial.log(), e))?)
        .stderr(log)
        .status()
        .map_err(|e| format!("starting starling launch: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(trial.log()).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(format!("the cluster job failed ({status}): {last} (log: {})", trial.log().display()));
    }
    let text = std::fs::read_to_string(trial.report()).map_err(|e| io(&trial.report(), e))?;
    let report: Report =
        serde_json::from_str(&text).map_err(|e| format!("reading {}: {e}", trial.report().display()))?;
    let t = report.test.ok_or_else(|| format!("{} has no holdout metrics", trial.report().display()))?;
    let nan = f64::NAN;
    let summary = Summary {
        count: t.count,
        logloss: t.logloss.unwrap_or(nan),
        auc: t.auc,
        rmse: t.rmse.unwrap_or(nan),
        accuracy: t.accuracy.unwrap_or(nan),
    };
    Ok((summary, report.train_examples))
}
