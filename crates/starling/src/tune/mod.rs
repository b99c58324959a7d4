//! `starling tune`: hyperparameter-parallel training. Many configurations of one job train side
//! by side from one binary cache of the parsed input, ASHA stops the weak ones early, and the
//! best is written as a job file and a model.
//!
//! Trials train online (as `starling train` with `batch_size = 1`) on one thread each: the
//! parallelism is across trials. They read the caches in order (`train.shuffle` does not apply).
//! Only trials that trained their whole budget can win; ASHA-stopped ones are ranked by their
//! metric at the rung where they stopped.

mod asha;
mod assign;
mod board;
mod cache;
mod launched;
mod space;
mod trial;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use asha::{Asha, Decision};
pub use assign::trial_job;
pub use board::{Board, Row};
pub use cache::{prepare, resolve, Prepared};
pub use space::{AshaConfig, Dimension, Method, Metric, Runner, SearchConfig, SearchSpace, SpaceError};
pub use trial::Outcome;

use crate::config::JobConfig;
use crate::model::Model;

/// Why a search could not run (a failing trial is not an error: it is recorded and skipped).
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The search space is invalid.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The job or the space cannot make a search.
    #[error("{0}")]
    Invalid(String),
    /// Reading the input or writing the cache failed.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// Writing results failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every trial failed or was stopped: there is no best job.
    #[error("{0}")]
    NoneFinished(String),
    /// Saving the best model failed.
    #[error(transparent)]
    Model(#[from] crate::model_file::ModelFileError),
}

/// A search to run.
pub struct TuneOptions {
    /// The job every trial starts from (`data.test` is the validation set).
    pub job: JobConfig,
    /// What varies and how.
    pub space: SearchSpace,
    /// Where results, the best job and model, and the caches (unless `data.cache_dir` is set) go.
    pub out: PathBuf,
    /// No status lines.
    pub quiet: bool,
}

/// What a search did.
#[derive(Debug, Serialize)]
pub struct TuneReport {
    /// The ranking metric.
    pub metric: Metric,
    /// Trials, in order.
    pub trials: Vec<Row>,
    /// Number (from 1) of the best trial that trained its whole budget.
    pub best: Option<usize>,
    /// Text examples parsed by this run (0 when the caches were reused); `null` with
    /// `runner = "launch"`, whose workers cache their own slices.
    pub examples_parsed: Option<u64>,
    /// Whether the caches existed and matched the input (`null` with `runner = "launch"`).
    pub cache_reused: Option<bool>,
    /// Wall time of the whole search.
    pub seconds: f64,
}

use serde::Serialize;

/// File names inside the output directory.
pub const RESULTS_CSV: &str = "trials.csv";
/// The JSON report ([`TuneReport`]).
pub const RESULTS_JSON: &str = "trials.json";
/// The best trial's job, ready for `starling train -c`.
pub const BEST_JOB: &str = "best.toml";
/// The best trial's model.
pub const BEST_MODEL: &str = "best.model";

/// Runs the search.
pub fn run(opts: &TuneOptions) -> Result<TuneReport, TuneError> {
    let start = Instant::now();
    let TuneOptions { job, space, out, quiet } = opts;
    if job.data.test.is_empty() {
        return Err(TuneError::Invalid("tune ranks trials on a holdout: set data.test (--test)".into()));
    }
    if let Some((p, _)) = space.params.iter().find(|(p, _)| p.starts_with("features.") && p != "features.hash_bits") {
        return Err(TuneError::Invalid(format!(
            "the space varies `{p}`: trials share one cache of the parsed input, so of the [features] options only features.hash_bits may vary"
        )));
    }
    if let Some((p, _)) = space.params.iter().find(|(p, _)| p.starts_with("data.")) {
        return Err(TuneError::Invalid(format!("the space varies `{p}`: every trial trains on the same data")));
    }
    let launch = space.search.runner == Runner::Launch;
    if launch && space.asha.is_some() {
        return Err(TuneError::Invalid(
            "ASHA stops trials at rungs inside their training, which a launched cluster job does not report: remove [asha] or use runner = \"threads\"".into(),
        ));
    }
    let mut assignments = space.trials().map_err(TuneError::Invalid)?;
    assign::coerce(job, &mut assignments);
    // Every trial's job is built before any trains: a space with a value no job accepts is
    // refused now, not discovered one trial at a time.
    let invalid: Vec<String> = assignments
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            trial_job(job, a).err().map(|e| format!("trial #{} ({}): {e}", i + 1, assign::describe(a)))
        })
        .collect();
    if let Some(first) = invalid.first() {
        return Err(TuneError::Invalid(format!(
            "{} of the {} trials make no valid job, so none was run; the first: {first}",
            invalid.len(),
            assignments.len()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| TuneError::Write { path: out.clone(), source })?;
    let cache_dir = job.data.cache_dir.clone().unwrap_or_else(|| out.join("cache"));
    let say = |s: &str| {
        if !quiet {
            crate::errln!("{s}");
        }
    };
    // Launched trials' workers cache their own slices of the text (shared by every trial).
    let (data, job) = if launch {
        say(&format!(
            "tune: each trial is a `starling launch` job; workers cache their input in {}",
            cache_dir.display()
        ));
        (None, resolve(job)?.0)
    } else {
        let data = prepare(job, &cache_dir)?;
        say(&format!(
            "tune: {} training and {} holdout examples {} ({})",
            data.rows,
            data.test_rows,
            if data.reused { "from the cache" } else { "parsed once into the cache" },
            cache_dir.display()
        ));
        let job = data.job.clone();
        (Some(data), job)
    };
    let job = &job;
    // The jobs the trials run: the values checked above, on the job with its input resolved.
    let jobs =
        assignments.iter().map(|a| trial_job(job, a)).collect::<Result<Vec<_>, _>>().map_err(TuneError::Invalid)?;

    let metric = space.search.metric;
    let board = Board::new(
        metric,
        assignments.iter().map(|a| a.iter().map(|(p, v)| (p.clone(), assign::show(v))).collect()).collect(),
    );
    let asha = space.asha.as_ref().map(|a| Mutex::new(Asha::new(a.eta, a.grace, metric)));
    let parallel = space.search.parallel.min(assignments.len()).max(1);
    say(&format!(
        "tune: {} trials ({} search{}), {parallel} at a time, ranked by holdout {}",
        assignments.len(),
        space.search.method.name(),
        if asha.is_some() { ", ASHA early stopping" } else { "" },
        metric.name()
    ));
    let next = AtomicUsize::new(0);
    let best_model: Mutex<Option<(usize, f64)>> = Mutex::new(None);
    let save_error: Mutex<Option<TuneError>> = Mutex::new(None);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(tj) = jobs.get(i) else { return };
                board.start(i);
                let (outcome, model, learned, budget) = match &data {
                    Some(data) => {
                        let td = trial::TrialData {
                            train: &data.train,
                            test: &data.test,
                            rows: data.rows,
                            fields: &data.fields,
                        };
                        let budget = u64::from(tj.train.passes) * data.rows;
                        let (o, m, l) = trial::run(tj, &td, asha.as_ref(), metric, &board.watch(i));
                        (o, m.map(|m| Trained::InMemory(Box::new(m))), l, budget)
                    }
                    None => {
                        let dir = launched::TrialDir::new(out, i + 1);
                        let (o, l) = launched::run(tj, &dir, &cache_dir, metric);
                        (o, Some(Trained::Saved(dir.model())), l, l)
                    }
                };
                board.finish(i, &outcome, learned, budget);
                if let (Outcome::Done(s), Some(model)) = (&outcome, model) {
                    let value = metric.value(s);
                    if let Err(e) = keep_if_best(&best_model, i, value, metric, model, out) {
                        save_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        if !quiet {
            s.spawn(|| {
                let mut last = Instant::now();
                while finished.load(Ordering::SeqCst) < assignments.len() {
                    std::thread::sleep(Duration::from_millis(100));
                    // The final line is printed once, after the search.
                    let running = finished.load(Ordering::SeqCst) < assignments.len();
                    if running && last.elapsed() >= Duration::from_secs(2) {
                        crate::errln!("{}", board.status_line());
                        last = Instant::now();
                    }
                }
            });
        }
    });
    if let Some(e) = save_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let best = board.best();
    let report = TuneReport {
        metric,
        trials: board.rows(),
        best: best.map(|(i, _)| i + 1),
        examples_parsed: data.as_ref().map(|d| d.parsed),
        cache_reused: data.as_ref().map(|d| d.reused),
        seconds: start.elapsed().as_secs_f64(),
    };
    // Results are on disk before anything is printed.
    write_results(out, &board, &report)?;
    if !quiet {
        crate::errln!("{}", board.status_line());
        crate::out!("{}", board.table());
    }
    match best {
        Some((i, v)) => {
            write_file(&out.join(BEST_JOB), &jobs[i].to_toml())?;
            crate::outln!(
                "best: trial #{} {} {v:.5} ({}); job in {}, model in {}",
                i + 1,
                metric.name(),
                assign::describe(&assignments[i]),
                out.join(BEST_JOB).display(),
                out.join(BEST_MODEL).display()
            );
        }
        None => {
            let failed: Vec<&board::Row> = report.trials.iter().filter(|r| r.status == "failed").collect();
            let why = failed.first().and_then(|r| r.reason.as_deref()).unwrap_or("every trial was stopped early");
            return Err(TuneError::NoneFinished(format!(
                "no trial trained to the end ({} of {} failed; the first: {why}); no best job or model, see {}",
                failed.len(),
                report.trials.len(),
                out.join(RESULTS_CSV).display()
            )));
        }
    }
    Ok(report)
}

/// A trial's trained model.
enum Trained {
    /// Trained in this process.
    InMemory(Box<Model>),
    /// Saved by a launched cluster job (a distributed checkpoint).
    Saved(PathBuf),
}

/// Saves `model` as the best model when trial `i`'s `value` beats the best so far.
fn keep_if_best(
    best: &Mutex<Option<(usize, f64)>>,
    i: usize,
    value: f64,
    metric: Metric,
    model: Trained,
    out: &Path,
) -> Result<(), TuneError> {
    let mut best = best.lock().unwrap_or_else(|e| e.into_inner());
    let improves = match *best {
        None => value.is_finite(),
        // Ties go to the earlier trial, so the result does not depend on thread timing.
        Some((j, b)) => metric.better(value, b) || (value == b && i < j),
    };
    let model = match model {
        Trained::InMemory(m) => *m,
        Trained::Saved(_) if !improves => return Ok(()),
        // One file, whatever the cluster's shape, so `best.model` reads the same either way.
        Trained::Saved(path) => crate::model_file::load(&path)?,
    };
    if improves {
        crate::model_file::save(&model, &out.join(BEST_MODEL))?;
        *best = Some((i, value));
    }
    drop(best);
    trial::recycle(model);
    Ok(())
}

fn write_results(out: &Path, board: &Board, report: &TuneReport) -> Result<(), TuneError> {
    write_file(&out.join(RESULTS_CSV), &board.csv())?;
    let json = serde_json::to_string_pretty(report).map_err(|e| TuneError::Invalid(e.to_string()))?;
    write_file(&out.join(RESULTS_JSON), &json)
}

/// Writes `text` to `path` atomically.
fn write_file(path: &Path, text: &str) -> Result<(), TuneError> {
    starling_fs::write_file(path, text.as_bytes())
        .map_err(|source| TuneError::Write { path: path.to_path_buf(), source })
}
