//! One trial: train a job's model online from the binary cache, reporting the holdout metric at
//! the ASHA rungs, and score it at the end.

use std::path::Path;
use std::sync::Mutex;

use starling_core::metrics::{Metrics, Summary};
use starling_core::{Example, LearnScratch, Learner, Table};
use starling_data::cache::CacheReader;

use crate::config::JobConfig;
use crate::model::{Model, ModelTable, Net};
use crate::with_table;
use starling_core::graph::Fields;

use super::asha::{Asha, Decision};
use super::space::Metric;

/// How a trial ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Trained its whole budget; the holdout metrics at the end.
    Done(Summary),
    /// Stopped by ASHA at a rung: the fraction of its budget trained and the holdout metrics there.
    Stopped {
        /// Fraction of the budget trained.
        at: f64,
        /// Holdout metrics at that rung.
        test: Summary,
    },
    /// Could not run or diverged; the reason.
    Failed(String),
}

/// The caches a trial reads: training and holdout examples.
pub struct TrialData<'a> {
    /// Training examples.
    pub train: &'a Path,
    /// Holdout examples.
    pub test: &'a Path,
    /// Training examples per pass.
    pub rows: u64,
    /// Fields of the examples (FFM sizes its rows by it; graphs are built over them).
    pub fields: &'a Fields,
}

/// What a running trial shows on the leaderboard.
pub trait Watch: Sync {
    /// `done` of `total` training examples learned.
    fn progress(&self, done: u64, total: u64);
    /// Holdout metric at a rung.
    fn rung(&self, at: f64, value: f64);
}

/// Runs `job` as a trial; returns how it ended, its model when it trained its whole budget, and
/// the training examples it learned.
pub fn run(
    job: &JobConfig,
    data: &TrialData,
    asha: Option<&Mutex<Asha>>,
    metric: Metric,
    watch: &dyn Watch,
) -> (Outcome, Option<Model>, u64) {
    let mut learned = 0;
    match train(job, data, asha, metric, watch, &mut learned) {
        Ok((outcome, model)) => (outcome, model, learned),
        Err(reason) => (Outcome::Failed(reason), None, learned),
    }
}

fn train(
    job: &JobConfig,
    data: &TrialData,
    asha: Option<&Mutex<Asha>>,
    metric: Metric,
    watch: &dyn Watch,
    learned: &mut u64,
) -> Result<(Outcome, Option<Model>), String> {
    let bits = job.features.hash_bits;
    let fields = data.fields.clone();
    let net = Net::new(job, &fields).map_err(|e| e.to_string())?;
    if net.learner().is_none() {
        return deep(job, data, watch, learned);
    }
    let table = ModelTable::reuse(SPARE.take(), &net.tables()[0], bits).map_err(|e| e.to_string())?;
    let mut model = Model { job: job.clone(), fields, net, tables: vec![table], passes_done: 0, examples_seen: 0 };
    let budget = u64::from(job.train.passes) * data.rows;
    let rungs: Vec<(f64, u64)> = asha
        .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()).rungs().to_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f, (f * budget as f64).ceil() as u64))
        .collect();
    let mut reader = CacheReader::open(data.train, bits).map_err(|e| e.to_string())?;
    let (mut next_rung, mut ex, mut scratch) = (0, Example::default(), LearnScratch::default());
    for pass in 1..=job.train.passes {
        if pass > 1 {
            reader.rewind().map_err(|e| e.to_string())?;
        }
        let mut progressive = Metrics::new(false);
        loop {
            let stop_at = rungs.get(next_rung).map_or(u64::MAX, |r| r.1);
            let mut run =
                Run { reader: &mut reader, ex: &mut ex, scratch: &mut scratch, progressive: &mut progressive };
            let ended = with_table!(model.table(), |t| run.learn_until(
                learner_of(&model),
                t,
                stop_at,
                learned,
                budget,
                watch
            ))?;
            if ended {
                break;
            }
            // At a rung: score the holdout and ask whether to go on.
            let (at, _) = rungs[next_rung];
            next_rung += 1;
            let test = evaluate(&model, data.test)?;
            let value = metric.value(&test);
            watch.rung(at, value);
            let decision = asha.map_or(Decision::Continue, |a| {
                a.lock().unwrap_or_else(|e| e.into_inner()).report(next_rung - 1, value)
            });
            if decision == Decision::Stop {
                recycle(model);
                return Ok((Outcome::Stopped { at, test }, None));
            }
        }
        let loss = progressive.mean_logloss();
        if progressive.count() > 0 && !loss.is_finite() {
            return Err(format!("diverged in pass {pass}: the progressive loss is {loss}"));
        }
        model.passes_done = pass;
        model.examples_seen += progressive.count();
    }
    watch.progress(*learned, budget);
    let test = evaluate(&model, data.test)?;
    if !metric.value(&test).is_finite() {
        return Err(format!("the holdout {} is not finite (diverged)", metric.name()));
    }
    Ok((Outcome::Done(test), Some(model)))
}

/// A deep model's trial: mini-batch training from the caches, as `starling train` runs it, scored
/// on the holdout at the end (its passes are not split at ASHA's rungs, so ASHA does not stop it).
fn deep(
    job: &JobConfig,
    data: &TrialData,
    watch: &dyn Watch,
    learned: &mut u64,
) -> Result<(Outcome, Option<Model>), String> {
    let mut job = job.clone();
    let budget = u64::from(job.train.passes) * data.rows;
    let open = |job: &mut JobConfig, paths: Vec<std::path::PathBuf>, cache: &Path| {
        let threads = job.train.threads;
        let mut inputs = crate::input::Inputs::open(job, &paths, threads).map_err(|e| e.to_string())?;
        inputs.use_cache(cache.to_path_buf(), job.features.hash_bits, crate::cache::WHOLE);
        Ok::<_, String>(inputs)
    };
    let (train_paths, test_paths) = (job.data.train.clone(), job.data.test.clone());
    let train = open(&mut job, train_paths, data.train)?;
    let test = open(&mut job, test_paths, data.test)?;
    let (model, report) =
        crate::trainer::train_on(job, &train, Some(&test), None, true).map_err(|e| crate::error_chain(&e))?;
    *learned += report.train_examples;
    watch.progress(*learned, budget);
    let test = report.test.ok_or("the trial has no holdout")?;
    if !test.logloss.is_finite() {
        return Err("the holdout logloss is not finite (diverged)".into());
    }
    Ok((Outcome::Done(test), Some(model)))
}

thread_local! {
    /// The table of this thread's last finished trial, reused by its next one: a fresh table's
    /// page faults and unmapping serialize the trial threads in the kernel (at 2^20 rows of FM,
    /// two threads spent more time there than training).
    static SPARE: std::cell::Cell<Option<ModelTable>> = const { std::cell::Cell::new(None) };
}

/// Keeps `model`'s table for the next trial on this thread.
pub fn recycle(mut model: Model) {
    SPARE.set(model.tables.pop());
}

/// The learner of a trial's (shallow) model.
fn learner_of(model: &Model) -> &starling_core::Learner {
    model.net.learner().expect("tune trials are shallow models")
}

/// The state of a trial's pass, for learning up to a stopping point.
struct Run<'a> {
    reader: &'a mut CacheReader,
    ex: &'a mut Example,
    scratch: &'a mut LearnScratch,
    progressive: &'a mut Metrics,
}

impl Run<'_> {
    /// Learns examples until `learned` reaches `stop_at` (false) or the pass ends (true).
    fn learn_until<T: Table>(
        &mut self,
        learner: &Learner,
        table: &T,
        stop_at: u64,
        learned: &mut u64,
        budget: u64,
        watch: &dyn Watch,
    ) -> Result<bool, String> {
        while *learned < stop_at {
            if !self.reader.next(self.ex).map_err(|e| e.to_string())? {
                return Ok(true);
            }
            let score = learner.learn(table, self.ex, self.scratch);
            self.progressive.add(learner.loss.predict(score), self.ex.label, self.ex.weight);
            *learned += 1;
            if learned.is_multiple_of(65_536) {
                watch.progress(*learned, budget);
            }
        }
        Ok(false)
    }
}

/// Holdout metrics of `model` on the cache at `path`.
fn evaluate(model: &Model, path: &Path) -> Result<Summary, String> {
    let mut reader = CacheReader::open(path, model.job.features.hash_bits).map_err(|e| e.to_string())?;
    let (mut metrics, mut ex, mut scratch) = (Metrics::new(true), Example::default(), LearnScratch::default());
    while reader.next(&mut ex).map_err(|e| e.to_string())? {
        let p = model.predict(&ex, &mut scratch).ok_or("tune trials are shallow models")?;
        metrics.add(p, ex.label, ex.weight);
    }
    Ok(metrics.summary())
}
