//! Training on one machine: Hogwild-style threads, each streaming its own slice of the input into
//! one shared table, pass after pass, with progressive validation and a holdout at the end.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use starling_core::graph::Fields;
use starling_core::metrics::{Metrics, Summary};
use starling_core::model::ShallowModel;
use starling_core::rng::Rng;
use starling_core::table::copy_rows;
use starling_core::{Example, HotRows, LearnScratch, Learner, Table};
use starling_data::DataError;
use starling_ps::{LocalClient, LocalClocks, LocalCluster, ParamClient, TableSpec};

use crate::cache;
use crate::config::{ConfigError, JobConfig};
use crate::input::{show_paths, InputError, Inputs, Reader};
use crate::model::{Model, ModelTable, Net, Scorer};
use crate::model_file::{self, ModelFileError};
use crate::progress::Progress;
use crate::stream::{for_each_example, shuffle_for};
use crate::with_table;
use crate::worker::{Position, StepBuffers, Worker, WorkerError};

/// Examples between progress updates of one thread (keeps the shared lock off the hot path).
const PROGRESS_EVERY: u64 = 16_384;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The job config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading the input failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Loading the model to resume from failed.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// `--init-model` is a different model from the one the job describes.
    #[error("cannot resume from {path}: {message}")]
    Incompatible { path: String, message: String },
    /// The in-process parameter server refused a request (a bug if it happens).
    #[error(transparent)]
    Ps(#[from] starling_ps::PsError),
    /// The model trained but could not be saved where asked; `rescued` says where it went instead.
    #[error("cannot save the trained model to {}: {source}; {}", path.display(), match rescued {
        Some(r) => format!("it was saved to {} instead", r.display()),
        None => "saving it to the temporary directory failed too".to_string(),
    })]
    Save {
        /// Where the job asked for it.
        path: std::path::PathBuf,
        /// Why that failed.
        source: ModelFileError,
        /// Where the model was written instead, if anywhere.
        rescued: Option<std::path::PathBuf>,
    },
    /// The model was trained and saved, then scoring the holdout failed.
    #[error("the trained model was saved to {}, but scoring the holdout failed: {source}", saved.display())]
    Holdout {
        /// Where the model is.
        saved: std::path::PathBuf,
        /// Why scoring failed.
        source: InputError,
    },
    /// Training produced non-finite weights (learning rate too high?).
    #[error("training diverged in pass {pass}: the running loss is {loss}; lower the learning rate")]
    Diverged { pass: u32, loss: f64 },
}

/// What a training run measured.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// Training examples processed in this run (all passes).
    pub train_examples: u64,
    /// Wall time of the training passes (parsing included, evaluation excluded).
    pub train_seconds: f64,
    /// Progressive validation of the last pass: each example scored before the model learns it.
    pub progressive: Summary,
    /// Holdout metrics after training, when test data was given.
    pub test: Option<Summary>,
    /// Malformed lines skipped under `max_bad_lines`.
    pub bad_lines: u64,
    /// First few skipped lines, for the end-of-run report.
    pub bad_line_samples: Vec<String>,
    /// With `data.cache_dir`: text examples parsed into caches by this run (0 when every cache was
    /// reused); `None` without a cache.
    pub cache_parsed: Option<u64>,
    /// With early stopping: the validation metrics of every pass.
    pub valid: Vec<(u32, Summary)>,
    /// With early stopping: the pass whose model was kept.
    pub best_pass: Option<u32>,
    /// Training stopped before `train.passes` for want of a better validation metric.
    pub stopped_early: bool,
    /// Where the model was saved (`train.save`), before the holdout was scored.
    pub saved: Option<std::path::PathBuf>,
}

/// Trains the model `job` describes (or continues `job.train.init_model`) and returns it.
pub fn train(job: &JobConfig, quiet: bool) -> Result<(Model, TrainReport), TrainError> {
    job.validate()?;
    // Everything that can fail is checked before the training it would throw away.
    if let Some(path) = &job.train.save {
        model_file::check_writable(path)?;
    }
    let mut job = job.clone();
    let (train_paths, test_paths, valid_paths, threads) =
        (job.data.train.clone(), job.data.test.clone(), job.data.valid.clone(), job.train.threads);
    let mut train_inputs = Inputs::open(&mut job, &train_paths, threads)?;
    let open = |job: &mut JobConfig, paths: &[std::path::PathBuf]| -> Result<Option<Inputs>, TrainError> {
        if paths.is_empty() {
            return Ok(None);
        }
        Ok(Some(Inputs::open(job, paths, threads)?))
    };
    let mut test_inputs = open(&mut job, &test_paths)?;
    let mut valid_inputs = open(&mut job, &valid_paths)?;
    train_inputs.preflight(&format!("the training input {}", show_paths(&train_paths)))?;
    for (inputs, what, paths) in
        [(&test_inputs, "holdout", &test_paths), (&valid_inputs, "validation set", &valid_paths)]
    {
        if let Some(i) = inputs {
            i.preflight(&format!("the {what} {}", show_paths(paths)))?;
        }
    }
    let mut cache_parsed = None;
    if let Some(dir) = job.data.cache_dir.clone() {
        let mut parsed_all = 0;
        for (inputs, name, paths) in [
            (Some(&mut train_inputs), "train", &train_paths),
            (test_inputs.as_mut(), "test", &test_paths),
            (valid_inputs.as_mut(), "valid", &valid_paths),
        ] {
            let Some(inputs) = inputs else { continue };
            let (path, parsed) = cache::ensure(&job, paths, &dir, name, cache::WHOLE)?;
            inputs.use_cache(path, job.features.hash_bits, cache::WHOLE);
            parsed_all += parsed;
        }
        cache_parsed = Some(parsed_all);
    }
    let (model, mut report) = train_on(job, &train_inputs, test_inputs.as_ref(), valid_inputs.as_ref(), quiet)?;
    report.cache_parsed = cache_parsed;
    Ok((model, report))
}

/// Trains on inputs already open (files, or record batches handed in by Python or Spark);
/// `job` is the one they resolved (see [`Inputs::open`], [`Inputs::from_batches`]). With
/// `valid` and `train.patience` or `train.lr_decay_on_plateau`, every pass is scored on `valid`
/// and the best pass's model is kept (early stopping).
pub fn train_on(
    mut job: JobConfig,
    train_inputs: &Inputs,
    test_inputs: Option<&Inputs>,
    valid_inputs: Option<&Inputs>,
    quiet: bool,
) -> Result<(Model, TrainReport), TrainError> {
    job.validate()?;
    let fields = train_inputs.fields();
    let mut model = match job.train.init_model.clone() {
        Some(path) => resume(&mut job, fields, &path)?,
        None => {
            train_inputs.resolve_numeric_stats(&mut job)?;
            Model::new(&job, fields)?
        }
    };

    let mut report = TrainReport::default();
    let start = Instant::now();
    // Deep models always learn in mini-batches; shallow ones online unless a batch is asked for.
    let online = model.net.learner().filter(|_| job.batch_size(false, job.train.threads) == 1);
    for (field, set, what) in [
        ("train.warmup_steps", job.train.warmup_steps > 0, "a warm-up"),
        ("train.eval_every", job.train.eval_every > 0, "evaluating within a pass"),
    ] {
        if online.is_some() && set {
            let kind = job.model.kind;
            let message = format!(
                "{what} needs mini-batches: {kind} learns online here (train.batch_size 1); set train.batch_size"
            );
            return Err(ConfigError::Invalid { field, message }.into());
        }
    }
    let mut batched = online.is_none().then(|| Batched::new(&model, &job));
    let t = &job.train;
    let watch = valid_inputs.filter(|_| t.patience > 0 || t.lr_decay_on_plateau > 1.0 || t.eval_every > 0);
    let mut stopper = EarlyStop::default();
    for p in 0..job.train.passes {
        let pass = model.passes_done + 1;
        let progress = Progress::new(format!("pass {pass}"), quiet);
        let more_passes = p + 1 < job.train.passes;
        let metrics = match &mut batched {
            Some(b) => {
                let seen = model.examples_seen;
                let every = job.train.eval_every;
                let mut judge = |learned: u64| -> Result<Verdict, TrainError> {
                    let valid = watch.expect("evaluations within a pass need a validation set");
                    stopper.judge(&model, &job, valid, (pass, seen + learned), true, &mut report, &progress)
                };
                let between = watch.filter(|_| every > 0).map(|_| (every, &mut judge as &mut Judge<'_>));
                match b.pass(&model, &job, train_inputs, pass, &progress, between) {
                    Ok(metrics) => metrics,
                    Err(e) => return Err(stopper.holdout_failure(&mut model, &job, e)),
                }
            }
            None => {
                let learner = model.net.learner().expect("online training is for shallow models");
                with_table!(model.table(), |t| run_pass(learner, t, &job, train_inputs, pass, &progress))?
            }
        };
        progress.finish();
        let s = metrics.summary();
        if s.count == 0 {
            return Err(InputError::Empty("the training input".into()).into());
        }
        if !s.logloss.is_finite() {
            return Err(TrainError::Diverged { pass, loss: s.logloss });
        }
        model.passes_done = pass;
        model.examples_seen += s.count;
        report.train_examples += s.count;
        report.progressive = s;
        progress.println(&format!("[pass {pass}] {} examples, progressive logloss {:.5}", s.count, s.logloss));
        if let Some(b) = &batched {
            if p + 1 == job.train.passes || job.train.eval_each_pass || watch.is_some() {
                b.copy_to(&model.tables);
            }
        }
        if let Some(valid) = watch.filter(|_| !stopper.stopped) {
            let at = (pass, model.examples_seen);
            let verdict = match stopper.judge(&model, &job, valid, at, more_passes, &mut report, &progress) {
                Ok(verdict) => verdict,
                Err(e) => return Err(stopper.holdout_failure(&mut model, &job, e)),
            };
            if let (Verdict::Decay(f), Some(b)) = (verdict, &batched) {
                b.scale_lr(f);
            }
        }
        if stopper.decayed != 1.0 {
            // The pass's decays (within it the servers applied them at once), for the model's own
            // optimizers: the online path's and the saved model's.
            model.net.scale_lr(std::mem::replace(&mut stopper.decayed, 1.0));
        }
        if stopper.stopped {
            report.stopped_early = true;
            break;
        }
        if job.train.eval_each_pass && more_passes {
            if let Some(test) = test_inputs {
                let t = evaluate_or_keep(&mut model, &job, test, quiet)?;
                progress.println(&format!("[pass {pass}] test {}", describe(&t)));
            }
        }
    }
    if let Some(b) = stopper.best.take().filter(|_| !stopper.last_was_best) {
        // The best evaluation's model is the one kept.
        (model.tables, model.passes_done, model.examples_seen) = (b.tables, b.passes_done, b.examples_seen);
    }
    report.best_pass = watch.map(|_| model.passes_done);
    report.train_seconds = start.elapsed().as_secs_f64();
    let (count, samples) = train_inputs.bad_lines();
    report.bad_lines = count;
    report.bad_line_samples = samples;
    let threads = job.train.threads;
    // Saved before the holdout is scored, so no failure after training loses the model.
    report.saved = keep(&mut model, &job)?;
    if let Some(test) = test_inputs {
        let scored = evaluate_inputs(&model, test, threads, quiet);
        report.test = Some(match (scored, &report.saved) {
            (Ok(s), _) => s,
            (Err(source), Some(saved)) => return Err(TrainError::Holdout { saved: saved.clone(), source }),
            (Err(e), None) => return Err(e.into()),
        });
        // Lines skipped in the holdout are reported with the training ones, never dropped silently.
        let (count, samples) = test.bad_lines();
        report.bad_lines += count;
        report.bad_line_samples.extend(samples);
    }
    Ok((model, report))
}

/// Scores `inputs` between passes; when that fails, the passes trained so far are kept (saved,
/// as after the last pass) before the error is returned.
fn evaluate_or_keep(model: &mut Model, job: &JobConfig, inputs: &Inputs, quiet: bool) -> Result<Summary, TrainError> {
    match evaluate_inputs(model, inputs, job.train.threads, quiet) {
        Ok(s) => Ok(s),
        Err(source) => match keep(model, job)? {
            Some(saved) => Err(TrainError::Holdout { saved, source }),
            None => Err(source.into()),
        },
    }
}

/// The model of the best pass so far, by the validation metric.
struct Best {
    value: f64,
    tables: Vec<ModelTable>,
    passes_done: u32,
    examples_seen: u64,
}

impl Best {
    /// A copy of `model`'s rows, scored `value`, after `passes_done` passes (the last maybe in
    /// progress) and `examples_seen` examples.
    fn of(model: &Model, value: f64, (passes_done, examples_seen): (u32, u64)) -> Result<Best, TrainError> {
        let mut tables = Vec::with_capacity(model.tables.len());
        for (spec, t) in model.net.tables().iter().zip(&model.tables) {
            let copy = ModelTable::new(spec, model.job.features.hash_bits)?;
            copy_rows(t.as_dyn(), copy.as_dyn());
            tables.push(copy);
        }
        Ok(Best { value, tables, passes_done, examples_seen })
    }
}

/// What an evaluation on the validation set decides.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    /// Train on.
    GoOn,
    /// Train on with every step size multiplied by this factor (a plateau).
    Decay(f32),
    /// Stop: `patience` evaluations in a row without a better metric.
    Stop,
}

/// An evaluation between steps, given the examples learned so far in the pass.
type Judge<'a> = dyn FnMut(u64) -> Result<Verdict, TrainError> + 'a;

/// Early stopping's state across evaluations (after passes, and every `train.eval_every`
/// examples within them).
struct EarlyStop {
    /// The best evaluation's model.
    best: Option<Best>,
    /// The latest evaluation was the best: the model as it stands is the one to keep.
    last_was_best: bool,
    worse_in_a_row: u32,
    /// The pass's decays so far, not yet applied to the model's own optimizers.
    decayed: f32,
    /// An evaluation stopped training.
    stopped: bool,
    /// Scoring the validation set failed (the model is then kept before the error is returned).
    eval_failed: bool,
}

impl Default for EarlyStop {
    fn default() -> Self {
        EarlyStop {
            best: None,
            last_was_best: false,
            worse_in_a_row: 0,
            decayed: 1.0,
            stopped: false,
            eval_failed: false,
        }
    }
}

impl EarlyStop {
    /// Scores `model` (its rows as they stand) on `valid` at `at` = (pass, examples seen),
    /// records it in `report` and decides; a decay is offered only while `more_to_come`.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        model: &Model,
        job: &JobConfig,
        valid: &Inputs,
        at: (u32, u64),
        more_to_come: bool,
        report: &mut TrainReport,
        progress: &Progress,
    ) -> Result<Verdict, TrainError> {
        let v = evaluate_inputs(model, valid, job.train.threads, true).map_err(|e| {
            self.eval_failed = true;
            TrainError::Input(e)
        })?;
        let (metric, value) = (job.train.monitor, job.train.monitor.value(&v));
        report.valid.push((at.0, v));
        self.last_was_best = self.best.as_ref().is_none_or(|b| metric.better(value, b.value));
        let mut note = String::new();
        let mut verdict = Verdict::GoOn;
        if self.last_was_best {
            self.worse_in_a_row = 0;
            self.best = Some(Best::of(model, value, at)?);
            note.push_str(" (best so far)");
        } else {
            self.worse_in_a_row += 1;
            let decay = job.train.lr_decay_on_plateau;
            if decay > 1.0 && more_to_come {
                verdict = Verdict::Decay(1.0 / decay);
                self.decayed /= decay;
                note.push_str(&format!("; learning rates divided by {decay}"));
            }
        }
        let pass = at.0;
        progress.println(&format!("[pass {pass}] valid after {} examples {}{note}", at.1, describe(&v)));
        if job.train.patience > 0 && self.worse_in_a_row >= job.train.patience {
            progress.println(&format!(
                "[pass {pass}] early stop: {} evaluations without a better validation {}",
                self.worse_in_a_row,
                metric.name()
            ));
            self.stopped = true;
            verdict = Verdict::Stop;
        }
        Ok(verdict)
    }

    /// `e`, from a pass or an evaluation: when scoring the validation set failed, the model is
    /// saved first (as for the holdout), so no finished training is lost.
    fn holdout_failure(&mut self, model: &mut Model, job: &JobConfig, e: TrainError) -> TrainError {
        let TrainError::Input(source) = e else { return e };
        if !self.eval_failed {
            return TrainError::Input(source);
        }
        match keep(model, job) {
            Ok(Some(saved)) => TrainError::Holdout { saved, source },
            Ok(None) => TrainError::Input(source),
            Err(kept) => kept,
        }
    }
}

/// Makes `model` the trained model of `job` and saves it where `train.save` says (if anywhere);
/// returns where it was saved.
fn keep(model: &mut Model, job: &JobConfig) -> Result<Option<std::path::PathBuf>, TrainError> {
    model.job = job.clone();
    model.job.train.init_model = None;
    let Some(path) = job.train.save.clone() else { return Ok(None) };
    save_or_rescue(model, &path)?;
    Ok(Some(path))
}

/// Saves `model` to `path`; when that fails (a full disk, a directory removed meanwhile), saves
/// it to the temporary directory instead, so the training is not lost, and says where.
fn save_or_rescue(model: &Model, path: &std::path::Path) -> Result<(), TrainError> {
    let Err(source) = model_file::save(model, path) else { return Ok(()) };
    let name = path.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let rescue = std::env::temp_dir().join(format!("starling-{}-{name}", std::process::id()));
    let rescued = model_file::save(model, &rescue).ok().map(|()| rescue);
    Err(TrainError::Save { path: path.to_path_buf(), source, rescued })
}

/// One pass: each thread streams its own splits into the shared table.
fn run_pass<T: Table>(
    learner: &Learner,
    table: &T,
    job: &JobConfig,
    inputs: &Inputs,
    pass: u32,
    progress: &Progress,
) -> Result<Metrics, InputError> {
    let threads = job.train.threads;
    on_threads(threads, false, |rank| {
        let mut reader = inputs.reader(rank, threads)?;
        Ok(learn_stream(learner, table, &mut reader, shuffle_for(job, pass, rank), progress, threads)?)
    })
}

/// Where the worker threads of a pass stand between evaluations: each pauses after every
/// `per_thread` examples it learns, and the pass goes on once every thread still in it has paused
/// and the evaluation has been judged.
struct Segments {
    /// Examples each thread learns between pauses (`None`: no pauses).
    per_thread: Option<u64>,
    state: Mutex<SegmentState>,
    changed: Condvar,
}

struct SegmentState {
    /// Threads still in the pass.
    running: usize,
    /// Threads waiting for the evaluation.
    paused: usize,
    /// Evaluations done in this pass.
    done: u64,
    /// An evaluation stopped training.
    stop: bool,
}

impl Segments {
    fn new(threads: usize, per_thread: Option<u64>) -> Self {
        let state = SegmentState { running: threads, paused: 0, done: 0, stop: false };
        Segments { per_thread, state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SegmentState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A thread that has learned `learned` examples this pass: pauses while an evaluation is due
    /// or running; false when training stops.
    fn pause(&self, learned: u64) -> bool {
        let Some(per) = self.per_thread else { return true };
        let mut st = self.lock();
        if st.stop || learned / per <= st.done {
            return !st.stop;
        }
        st.paused += 1;
        let at = st.done;
        self.changed.notify_all();
        while st.done == at {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.stop
    }

    /// A thread's pass ended: nobody waits for it.
    fn leave(&self) {
        self.lock().running -= 1;
        self.changed.notify_all();
    }

    /// Waits until every thread still in the pass has paused (`Some(examples learned by all of
    /// them, by the pause count)`) or none is left (`None`).
    fn all_paused(&self) -> Option<u64> {
        let per = self.per_thread?;
        let mut st = self.lock();
        loop {
            if st.running == 0 {
                return None;
            }
            if st.paused > 0 && st.paused == st.running {
                return Some((st.done + 1) * per * st.running as u64);
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Ends the pause: the threads go on, or stop when `go_on` is false.
    fn resume(&self, go_on: bool) {
        let mut st = self.lock();
        st.stop = !go_on;
        st.paused = 0;
        st.done += 1;
        self.changed.notify_all();
    }
}

/// Multiplies every table's step size on `cluster`'s servers by `factor`.
fn scale_lr(cluster: &LocalCluster, factor: f32) {
    cluster.servers().iter().for_each(|s| s.scale_lr(factor));
}

/// Mini-batch training in one process: `threads` workers over an in-process parameter server,
/// the same worker loop a cluster runs, gated by `cluster.staleness`.
struct Batched {
    cluster: Arc<LocalCluster>,
    clients: Vec<(LocalClient, Position, StepBuffers)>,
}

impl Batched {
    /// An in-process server holding `model`'s rows (non-empty when resuming).
    fn new(model: &Model, job: &JobConfig) -> Self {
        let threads = job.train.threads;
        let specs = model.net.tables().to_vec();
        let clocks = LocalClocks::new(threads, job.cluster.staleness, 0);
        let cluster = LocalCluster::with_warmup(specs, 1, clocks, job.train.warmup_steps);
        for (store, table) in cluster.servers()[0].tables().iter().zip(&model.tables) {
            copy_rows(table.as_dyn(), store);
        }
        let clients =
            (0..threads).map(|r| (cluster.client(r, 0), Position::default(), StepBuffers::default())).collect();
        Batched { cluster, clients }
    }

    /// One pass of every worker thread. With `between = (every, judge)`, the threads pause each
    /// time each has learned its share of `every` more examples; the server's rows are then
    /// copied into `model` and `judge(examples learned in the pass)` says whether to go on
    /// ([`Verdict`]).
    fn pass(
        &mut self,
        model: &Model,
        job: &JobConfig,
        inputs: &Inputs,
        pass: u32,
        progress: &Progress,
        between: Option<(u64, &mut Judge<'_>)>,
    ) -> Result<Metrics, TrainError> {
        let world = self.clients.len();
        let (every, judge) = between.unzip();
        let segments = Segments::new(world, every.map(|e| (e / world as u64).max(1)));
        let pause = |learned: u64| segments.pause(learned);
        let worker = |rank| Worker {
            job,
            model: model.net.step(),
            inputs,
            rank,
            world,
            workers: world,
            batch_size: job.batch_size(false, world),
            // In-process pulls have no latency to hide.
            prefetch: false,
            pause: every.map(|_| &pause as &(dyn Fn(u64) -> bool + Sync)),
        };
        let cluster = &self.cluster;
        // All rejoin before any starts, level: no thread steps alone or out of step.
        for (client, _, _) in &mut self.clients {
            client.rejoin();
        }
        let (results, judged) = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .clients
                .iter_mut()
                .enumerate()
                .map(|(rank, (client, pos, bufs))| {
                    let (worker, segments) = (&worker, &segments);
                    s.spawn(move || {
                        let r = worker(rank).pass(pass, client, pos, bufs, progress);
                        // A thread whose pass ended (or failed) must not hold the others at a barrier.
                        segments.leave();
                        client.finish()?;
                        r
                    })
                })
                .collect();
            let mut judged = Ok(());
            if let Some(judge) = judge {
                while let Some(learned) = segments.all_paused() {
                    copy_out(cluster, &model.tables);
                    let go_on = match judge(learned) {
                        Ok(Verdict::GoOn) => true,
                        Ok(Verdict::Decay(f)) => {
                            scale_lr(cluster, f);
                            true
                        }
                        Ok(Verdict::Stop) => false,
                        Err(e) => {
                            judged = Err(e);
                            false
                        }
                    };
                    segments.resume(go_on);
                }
            }
            let results: Vec<Result<Metrics, WorkerError>> =
                handles.into_iter().map(|h| h.join().expect("a worker thread panicked")).collect();
            (results, judged)
        });
        judged?;
        let mut total = Metrics::new(false);
        for r in results {
            total.merge(&r.map_err(|e| match e {
                WorkerError::Input(e) => TrainError::Input(e),
                WorkerError::Diverged { loss, .. } => TrainError::Diverged { pass, loss },
                WorkerError::Ps(e) => TrainError::Ps(e),
            })?);
        }
        Ok(total)
    }

    /// Multiplies every table's step size on the server by `factor`.
    fn scale_lr(&self, factor: f32) {
        scale_lr(&self.cluster, factor);
    }

    /// Copies the server's rows into the model's tables (for evaluation and saving).
    fn copy_to(&self, tables: &[ModelTable]) {
        copy_out(&self.cluster, tables);
    }
}

/// Copies `cluster`'s rows (one server's) into `tables`.
fn copy_out(cluster: &LocalCluster, tables: &[ModelTable]) {
    for (store, table) in cluster.servers()[0].tables().iter().zip(tables) {
        copy_rows(store, table.as_dyn());
    }
}

/// Runs `work(rank)` on `threads` scoped threads and merges the metrics they return.
fn on_threads(
    threads: usize,
    keep_for_auc: bool,
    work: impl Fn(usize) -> Result<Metrics, InputError> + Sync,
) -> Result<Metrics, InputError> {
    let work = &work;
    let results: Vec<Result<Metrics, InputError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|rank| s.spawn(move || work(rank))).collect();
        handles.into_iter().map(|h| h.join().expect("a worker thread panicked")).collect()
    });
    let mut total = Metrics::new(keep_for_auc);
    for r in results {
        total.merge(&r?);
    }
    Ok(total)
}

/// Learns every example of `reader`, in order or shuffled within a window. One of several threads
/// keeps the rows many examples write to itself between merges ([`HotRows`]), so the threads do
/// not trade those rows' cache lines, when the optimizer's updates can be merged by adding them
/// (not Adam's); one thread alone learns straight into `table`.
fn learn_stream<T: Table>(
    learner: &Learner,
    table: &T,
    reader: &mut Reader,
    shuffle: Option<(usize, Rng)>,
    progress: &Progress,
    threads: usize,
) -> Result<Metrics, DataError> {
    let mut scratch = LearnScratch::default();
    if threads > 1 && learner.optimizer.merges_by_delta() {
        let mut hot = HotRows::new(table);
        learn_each(learner, reader, shuffle, progress, |ex, next| {
            let score = learn_one(learner, &hot, ex, next, &mut scratch);
            hot.end_example();
            score
        })
    } else {
        learn_each(learner, reader, shuffle, progress, |ex, next| learn_one(learner, table, ex, next, &mut scratch))
    }
}

/// Learns `ex`, starting the next example's cache misses first so that they overlap with it.
#[inline(always)]
fn learn_one<T: Table>(
    learner: &Learner,
    table: &T,
    ex: &Example,
    next: Option<&Example>,
    scratch: &mut LearnScratch,
) -> f32 {
    if let Some(next) = next {
        learner.prefetch(table, next);
    }
    learner.learn(table, ex, scratch)
}

/// Runs `learn` (which gives the score) on every example of `reader`, keeping the metrics and
/// reporting progress.
fn learn_each(
    learner: &Learner,
    reader: &mut Reader,
    shuffle: Option<(usize, Rng)>,
    progress: &Progress,
    mut learn: impl FnMut(&Example, Option<&Example>) -> f32,
) -> Result<Metrics, DataError> {
    let mut metrics = Metrics::new(false);
    let mut reported = (0u64, 0f64);
    for_each_example(reader, shuffle, |ex: &Example, next: Option<&Example>| -> Result<(), DataError> {
        let score = learn(ex, next);
        metrics.add(learner.loss.predict(score), ex.label, ex.weight);
        if metrics.count() - reported.0 >= PROGRESS_EVERY {
            progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
            reported = (metrics.count(), metrics.loss_sum());
        }
        Ok(())
    })?;
    progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
    Ok(metrics)
}

/// Loads the model to continue from and checks it is the model `job` describes.
fn resume(job: &mut JobConfig, fields: Fields, path: &std::path::Path) -> Result<Model, TrainError> {
    let old = model_file::load(path)?;
    // The weights learned what the saved model's numeric inputs looked like: keep its statistics.
    for (field, stats) in &old.job.model.numeric_stats {
        job.model.numeric_stats.entry(field.clone()).or_insert(*stats);
    }
    let job = &*job;
    let incompatible = |message: String| TrainError::Incompatible { path: path.display().to_string(), message };
    let fresh = Net::new(job, &fields)?;
    let net = match (&old.net, fresh) {
        (Net::Shallow(o), Net::Shallow(n)) => {
            let (a, b) = (&o.learner.model, &n.learner.model);
            if (a.kind, a.k, a.num_fields) != (b.kind, b.k, b.num_fields) {
                return Err(incompatible(format!(
                    "it is {} with k={} over {} fields, the job asks for {} with k={} over {} fields",
                    a.kind, a.k, a.num_fields, b.kind, b.k, b.num_fields
                )));
            }
            // The table keeps its own init (the saved seed); new hyperparameters of the same optimizer apply.
            let learner = Learner::new(a.clone(), n.learner.optimizer, n.learner.loss)
                .map_err(|e| incompatible(e.to_string()))?;
            Net::Shallow(ShallowModel::new(learner))
        }
        (o, n) => {
            let (a, b) = (o.tables(), n.tables());
            let shape = |t: &[TableSpec]| t.iter().map(|t| (t.name.clone(), t.dim, t.kind)).collect::<Vec<_>>();
            if o.learner().is_some() != n.learner().is_some() || shape(a) != shape(b) {
                return Err(incompatible(format!(
                    "it is {} with tables {}, the job asks for {} with tables {}",
                    old.job.model.kind,
                    describe_tables(a),
                    job.model.kind,
                    describe_tables(b)
                )));
            }
            n
        }
    };
    for (a, b) in old.net.tables().iter().zip(net.tables()) {
        if std::mem::discriminant(&a.optimizer) != std::mem::discriminant(&b.optimizer) {
            return Err(incompatible(format!(
                "its table `{}` was trained with {}; its optimizer state does not fit {}",
                a.name,
                a.optimizer.name(),
                b.optimizer.name()
            )));
        }
    }
    if old.net.step().loss() != net.step().loss() {
        return Err(incompatible(format!(
            "it was trained with {} loss, the job uses {}",
            old.net.step().loss(),
            net.step().loss()
        )));
    }
    if old.job.features != job.features {
        return Err(incompatible(
            "its [features] differ from the job's (format, hashing, crosses and transforms must match)".into(),
        ));
    }
    Ok(Model {
        job: job.clone(),
        fields: old.fields,
        net,
        tables: old.tables,
        passes_done: old.passes_done,
        examples_seen: old.examples_seen,
    })
}

/// `sparse (11 floats), dense (4096 floats)`, for messages.
fn describe_tables(t: &[TableSpec]) -> String {
    t.iter().map(|t| format!("{} ({} floats)", t.name, t.dim)).collect::<Vec<_>>().join(", ")
}

/// Scores every example of `inputs` with `model`, on `threads` threads; AUC included.
pub fn evaluate_inputs(model: &Model, inputs: &Inputs, threads: usize, quiet: bool) -> Result<Summary, InputError> {
    let progress = Progress::new("eval", quiet);
    let total = on_threads(threads, true, |rank| {
        let mut reader = inputs.reader(rank, threads)?;
        let mut metrics = Metrics::new(true);
        let mut scratch = LearnScratch::default();
        let mut ex = Example::default();
        let mut scorer = Scorer::new(model);
        let loss = model.net.step().loss();
        let mut reported = 0;
        while reader.next(&mut ex)? {
            match model.predict(&ex, &mut scratch) {
                Some(p) => metrics.add(p, ex.label, ex.weight),
                None => scorer.push(&ex, &mut |s, y, w| metrics.add(loss.predict(s), y, w)),
            }
            if metrics.count() - reported >= PROGRESS_EVERY {
                progress.add(metrics.count() - reported, 0.0);
                reported = metrics.count();
            }
        }
        scorer.flush(&mut |s, y, w| metrics.add(loss.predict(s), y, w));
        Ok(metrics)
    })?;
    progress.finish();
    Ok(total.summary())
}

/// One line of metrics for logs.
pub fn describe(s: &Summary) -> String {
    let auc = s.auc.map_or("n/a".to_string(), |a| format!("{a:.5}"));
    format!("{} examples: logloss {:.5}, AUC {auc}, accuracy {:.4}, RMSE {:.5}", s.count, s.logloss, s.accuracy, s.rmse)
}
