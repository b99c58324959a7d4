//! A parameter-server worker's loop, the same for every model: read a mini-batch, gather its keys
//! per table, pull their weights, run the model's step, push the gradients of the rows it
//! touched, tick the clock. The same loop runs in a worker process over TCP and in `starling
//! train` threads over the in-process client (design.md, "The path of one example").

use std::any::Any;

use starling_core::metrics::Metrics;
use starling_core::model::batch_keys;
use starling_core::{compact_touched, Example, Gradients, MiniBatch, Model};
use starling_data::DataError;
use starling_ps::{ParamClient, PsError};

use crate::config::JobConfig;
use crate::input::{InputError, Inputs};
use crate::progress::Progress;
use crate::stream::{for_each_example, shuffle_for};

/// The table id of a shallow model's rows (its only table) on the servers.
pub const WEIGHTS: u32 = 0;

/// Examples between progress updates.
const PROGRESS_EVERY: u64 = 16_384;

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Reading input failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The servers or the coordinator failed or refused.
    #[error(transparent)]
    Ps(#[from] PsError),
    /// The loss became NaN or infinite.
    #[error("training diverged at step {step}: the running loss is {loss}; lower the learning rate")]
    Diverged {
        /// Step at which it was seen.
        step: u64,
        /// The running loss.
        loss: f64,
    },
}

/// Why the loop over a pass's examples ended before its input did.
enum Ended {
    /// `Worker::pause` said so.
    Stopped,
    /// A step failed.
    Failed(WorkerError),
}

impl From<WorkerError> for Ended {
    fn from(e: WorkerError) -> Self {
        Ended::Failed(e)
    }
}

impl From<DataError> for Ended {
    fn from(e: DataError) -> Self {
        Ended::Failed(e.into())
    }
}

impl From<DataError> for WorkerError {
    fn from(e: DataError) -> Self {
        WorkerError::Input(InputError::Data(e))
    }
}

/// One worker's share of a job.
pub struct Worker<'a> {
    /// The job (features already resolved).
    pub job: &'a JobConfig,
    /// The model's tables and step; its optimizers run on the servers.
    pub model: &'a dyn Model,
    /// The job's training input.
    pub inputs: &'a Inputs,
    /// Which slice of the input this worker reads: `rank` of `world` equal slices.
    pub rank: usize,
    /// Slices the input is cut into (the workers, or an elastic job's pieces).
    pub world: usize,
    /// Workers whose steps share the servers: a batch mean is split over them.
    pub workers: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Send the pull of the next batch before computing the current one (SSP and ASP only: the
    /// read then misses this worker's last push; see `ClusterConfig::prefetch`). Models of one
    /// table only: a transport keeps one pull in flight.
    pub prefetch: bool,
    /// Called after every step with the examples this worker learned so far in the pass; false
    /// ends the pass there (an early stop between evaluations).
    pub pause: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
}

/// A mini-batch and the weights pulled for its keys, per table.
#[derive(Default)]
struct Pulled {
    batch: MiniBatch,
    weights: Vec<Vec<f32>>,
}

/// Reused buffers of a worker's steps.
#[derive(Default)]
pub struct StepBuffers {
    /// The batch being filled from the input.
    next: Pulled,
    /// With prefetch, the batch whose weights are pulled and whose step is still to run.
    ready: Pulled,
    has_ready: bool,
    grads: Gradients,
    push_keys: Vec<u64>,
    push_grads: Vec<f32>,
    /// The model's scratch, made on first use.
    scratch: Option<Box<dyn Any + Send>>,
    /// Per dense table, the keys of its chunks.
    dense_keys: Vec<Vec<u64>>,
}

impl StepBuffers {
    fn prepare(&mut self, model: &dyn Model) {
        if self.scratch.is_none() {
            self.scratch = Some(model.scratch());
            self.dense_keys = model.tables().iter().map(|t| t.dense_keys()).collect();
        }
    }
}

/// Where a worker is in its data: steps done so far, and how many of them a resumed run skips.
#[derive(Clone, Copy, Debug, Default)]
pub struct Position {
    /// Steps finished (the worker's clock).
    pub step: u64,
    /// Steps already applied by an earlier run (read and discarded when resuming).
    pub skip: u64,
}

impl Worker<'_> {
    /// One pass over this worker's slice: a step per mini-batch. Returns the progressive metrics of
    /// the examples it learned (skipped ones excluded).
    pub fn pass(
        &self,
        pass: u32,
        client: &mut dyn ParamClient,
        pos: &mut Position,
        bufs: &mut StepBuffers,
        progress: &Progress,
    ) -> Result<Metrics, WorkerError> {
        let mut reader = self.inputs.reader(self.rank, self.world)?;
        bufs.prepare(self.model);
        let mut metrics = Metrics::new(false);
        let mut reported = (0u64, 0f64);
        bufs.next.batch.clear();
        bufs.has_ready = false;
        // Counts a finished step and reports progress now and then.
        let mut done = |pos: &mut Position, metrics: &Metrics| -> Result<(), WorkerError> {
            pos.step += 1;
            if metrics.count() - reported.0 >= PROGRESS_EVERY {
                let loss = metrics.loss_sum() - reported.1;
                if !loss.is_finite() {
                    return Err(WorkerError::Diverged { step: pos.step, loss: metrics.mean_logloss() });
                }
                progress.add(metrics.count() - reported.0, loss);
                reported = (metrics.count(), metrics.loss_sum());
            }
            Ok(())
        };
        // A full batch in `bufs.next`: pull it and run a step (of it, or of the batch before it).
        let mut full = |bufs: &mut StepBuffers, metrics: &mut Metrics| -> Result<(), WorkerError> {
            let steps_in_flight = u64::from(bufs.has_ready);
            if pos.step + steps_in_flight < pos.skip {
                // Resuming: these steps are already in the servers' rows.
                pos.step += 1;
            } else if self.prefetching() && bufs.has_ready {
                self.prefetch_step(client, bufs, pos.step, metrics)?;
                done(pos, metrics)?;
            } else {
                seal_for(self.model, &mut bufs.next.batch);
                self.pull(client, &bufs.dense_keys, &mut bufs.next)?;
                if self.prefetching() {
                    std::mem::swap(&mut bufs.next, &mut bufs.ready);
                    bufs.has_ready = true;
                } else {
                    self.learn(client, bufs, false, pos.step, metrics)?;
                    done(pos, metrics)?;
                }
            }
            bufs.next.batch.clear();
            Ok(())
        };
        let learned = for_each_example(&mut reader, shuffle_for(self.job, pass, self.rank), |ex: &Example, _| {
            bufs.next.batch.push(ex);
            if bufs.next.batch.len() >= self.batch_size {
                full(bufs, &mut metrics)?;
                if self.pause.is_some_and(|go_on| !go_on(metrics.count())) {
                    return Err(Ended::Stopped);
                }
            }
            Ok(())
        });
        match learned {
            Err(Ended::Stopped) => {
                bufs.next.batch.clear();
                progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
                return Ok(metrics);
            }
            Err(Ended::Failed(e)) => return Err(e),
            Ok(()) => {}
        }
        if !bufs.next.batch.is_empty() {
            full(bufs, &mut metrics)?;
        }
        if bufs.has_ready {
            self.learn(client, bufs, true, pos.step, &mut metrics)?;
            bufs.has_ready = false;
            done(pos, &metrics)?;
        }
        progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
        if !metrics.mean_logloss().is_finite() && metrics.count() > 0 {
            return Err(WorkerError::Diverged { step: pos.step, loss: metrics.mean_logloss() });
        }
        Ok(metrics)
    }

    /// Prefetching is on, and possible: one pull in flight needs a model of one table.
    fn prefetching(&self) -> bool {
        self.prefetch && self.model.tables().len() == 1
    }

    /// Pulls the weights of every table for `b`'s (sealed) batch.
    fn pull(&self, client: &mut dyn ParamClient, dense_keys: &[Vec<u64>], b: &mut Pulled) -> Result<(), WorkerError> {
        pull_tables(self.model, client, dense_keys, &b.batch, &mut b.weights)
    }

    /// The step of `bufs.ready` while `bufs.next`'s pull is in flight; `next` becomes ready.
    fn prefetch_step(
        &self,
        client: &mut dyn ParamClient,
        bufs: &mut StepBuffers,
        step: u64,
        metrics: &mut Metrics,
    ) -> Result<(), WorkerError> {
        seal_for(self.model, &mut bufs.next.batch);
        client.pull_start(WEIGHTS, bufs.next.batch.keys())?;
        self.gradients(bufs, true, step, metrics);
        let dim = self.model.tables()[0].dim;
        let next = &mut bufs.next;
        next.weights.resize_with(1, Vec::new);
        next.weights[0].resize(next.batch.keys().len() * dim, 0.0);
        client.pull_finish(WEIGHTS, next.batch.keys(), &mut next.weights[0])?;
        self.push_and_clock(client, bufs, true)?;
        std::mem::swap(&mut bufs.next, &mut bufs.ready);
        Ok(())
    }

    /// Gradient, push and clock of the pulled batch (`ready` or `next`).
    fn learn(
        &self,
        client: &mut dyn ParamClient,
        bufs: &mut StepBuffers,
        ready: bool,
        step: u64,
        metrics: &mut Metrics,
    ) -> Result<(), WorkerError> {
        self.gradients(bufs, ready, step, metrics);
        self.push_and_clock(client, bufs, ready)
    }

    /// The model's step on the pulled batch (`ready` or `next`): scores and gradients.
    fn gradients(&self, b: &mut StepBuffers, ready: bool, step: u64, metrics: &mut Metrics) {
        let p = if ready { &b.ready } else { &b.next };
        let loss = self.model.loss();
        let scratch = b.scratch.as_mut().expect("buffers prepared").as_mut();
        self.model.step(&p.batch, &p.weights, step, Some(&mut b.grads), scratch, &mut |s, y, w| {
            metrics.add(loss.predict(s), y, w)
        });
        if self.model.batch_mean() && self.workers > 1 {
            // Each worker's share of the mean over the step's examples on every worker: summed by
            // a synchronous round, or applied one by one, the steps are those of one process
            // learning from all of them (a row only this worker touched gets what it would there).
            let share = 1.0 / self.workers as f32;
            for g in b.grads.grads.iter_mut().flatten() {
                *g *= share;
            }
        }
    }

    /// Pushes the touched rows' gradients of every table and ends the step.
    fn push_and_clock(
        &self,
        client: &mut dyn ParamClient,
        b: &mut StepBuffers,
        ready: bool,
    ) -> Result<(), WorkerError> {
        let p = if ready { &b.ready } else { &b.next };
        for (t, spec) in self.model.tables().iter().enumerate() {
            let keys = batch_keys(spec, &p.batch, &b.dense_keys[t]);
            let (grads, touched) = (&b.grads.grads[t], &b.grads.touched[t]);
            let (keys, grads) = compact_touched(keys, grads, touched, spec.dim, &mut b.push_keys, &mut b.push_grads);
            // A synchronous round counts every worker's push, empty or not.
            if !keys.is_empty() || spec.sync {
                client.push(t as u32, keys, grads)?;
            }
        }
        client.clock()?;
        Ok(())
    }
}

/// Seals `batch` with `model`'s key groups.
pub fn seal_for(model: &dyn Model, batch: &mut MiniBatch) {
    batch.seal_groups(model.key_groups(), |f| model.key_group(f));
}

/// Pulls every table of `model` for the sealed `batch` into `weights`.
fn pull_tables(
    model: &dyn Model,
    client: &mut dyn ParamClient,
    dense_keys: &[Vec<u64>],
    batch: &MiniBatch,
    weights: &mut Vec<Vec<f32>>,
) -> Result<(), WorkerError> {
    weights.resize_with(model.tables().len(), Vec::new);
    for (t, (spec, w)) in model.tables().iter().zip(weights.iter_mut()).enumerate() {
        let keys = batch_keys(spec, batch, &dense_keys[t]);
        w.resize(keys.len() * spec.dim, 0.0);
        client.pull(t as u32, keys, w)?;
    }
    Ok(())
}

/// Scores every example of `reader`'s share through `client` (pulls only), for a holdout.
pub fn evaluate(
    model: &dyn Model,
    inputs: &Inputs,
    rank: usize,
    world: usize,
    batch_size: usize,
    client: &mut dyn ParamClient,
) -> Result<Metrics, WorkerError> {
    let mut reader = inputs.reader(rank, world)?;
    let mut metrics = Metrics::new(true);
    let (mut batch, mut weights, mut scratch) = (MiniBatch::new(), Vec::new(), model.scratch());
    let dense_keys: Vec<Vec<u64>> = model.tables().iter().map(|t| t.dense_keys()).collect();
    let loss = model.loss();
    let mut flush = |batch: &mut MiniBatch, metrics: &mut Metrics| -> Result<(), WorkerError> {
        seal_for(model, batch);
        pull_tables(model, client, &dense_keys, batch, &mut weights)?;
        model.step(batch, &weights, 0, None, scratch.as_mut(), &mut |s, y, w| metrics.add(loss.predict(s), y, w));
        batch.clear();
        Ok(())
    };
    for_each_example(&mut reader, None, |ex: &Example, _| {
        batch.push(ex);
        if batch.len() >= batch_size.max(1000) {
            flush(&mut batch, &mut metrics)?;
        }
        Ok::<(), WorkerError>(())
    })?;
    if !batch.is_empty() {
        flush(&mut batch, &mut metrics)?;
    }
    Ok(metrics)
}
