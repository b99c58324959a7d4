//! A parameter-server worker's loop: read a mini-batch, pull its keys' weights, compute the summed
//! gradients, push them, tick the clock. The same loop runs in a worker process over TCP and in
//! `starling train` threads over the in-process client (ARCHITECTURE decision 4).

use starling_core::metrics::Metrics;
use starling_core::{compact_touched, BatchScratch, Example, Learner, MiniBatch};
use starling_data::DataError;
use starling_ps::{ParamClient, PsError};

use crate::config::JobConfig;
use crate::input::{InputError, Inputs};
use crate::progress::Progress;
use crate::stream::{for_each_example, shuffle_for};

/// The sparse model table's id on the servers.
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

impl From<DataError> for WorkerError {
    fn from(e: DataError) -> Self {
        WorkerError::Input(InputError::Data(e))
    }
}

/// One worker's share of a job.
pub struct Worker<'a> {
    /// The job (features already resolved).
    pub job: &'a JobConfig,
    /// Model shape and loss; its optimizer runs on the servers.
    pub learner: &'a Learner,
    /// The job's training input.
    pub inputs: &'a Inputs,
    /// This worker's rank.
    pub rank: usize,
    /// Number of workers.
    pub world: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Send the pull of the next batch before computing the current one (SSP and ASP only: the
    /// read then misses this worker's last push; see `ClusterConfig::prefetch`).
    pub prefetch: bool,
}

/// A mini-batch and the weights pulled for its keys.
#[derive(Default)]
struct Pulled {
    batch: MiniBatch,
    weights: Vec<f32>,
}

/// Reused buffers of a worker's steps.
#[derive(Default)]
pub struct StepBuffers {
    /// The batch being filled from the input.
    next: Pulled,
    /// With prefetch, the batch whose weights are pulled and whose step is still to run.
    ready: Pulled,
    has_ready: bool,
    grads: Vec<f32>,
    touched: Vec<bool>,
    push_keys: Vec<u64>,
    push_grads: Vec<f32>,
    scratch: BatchScratch,
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
            } else if self.prefetch && bufs.has_ready {
                self.prefetch_step(client, bufs, metrics)?;
                done(pos, metrics)?;
            } else {
                let b = &mut bufs.next;
                b.batch.seal();
                self.pull(client, b)?;
                if self.prefetch {
                    std::mem::swap(&mut bufs.next, &mut bufs.ready);
                    bufs.has_ready = true;
                } else {
                    self.learn(client, bufs, false, metrics)?;
                    done(pos, metrics)?;
                }
            }
            bufs.next.batch.clear();
            Ok(())
        };
        for_each_example(&mut reader, shuffle_for(self.job, pass, self.rank), |ex: &Example, _| {
            bufs.next.batch.push(ex);
            if bufs.next.batch.len() >= self.batch_size {
                full(bufs, &mut metrics)?;
            }
            Ok::<(), WorkerError>(())
        })?;
        if !bufs.next.batch.is_empty() {
            full(bufs, &mut metrics)?;
        }
        if bufs.has_ready {
            self.learn(client, bufs, true, &mut metrics)?;
            bufs.has_ready = false;
            done(pos, &metrics)?;
        }
        progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
        if !metrics.mean_logloss().is_finite() && metrics.count() > 0 {
            return Err(WorkerError::Diverged { step: pos.step, loss: metrics.mean_logloss() });
        }
        Ok(metrics)
    }

    /// Pulls the weights of `b`'s (sealed) batch.
    fn pull(&self, client: &mut dyn ParamClient, b: &mut Pulled) -> Result<(), WorkerError> {
        let keys = b.batch.keys();
        b.weights.resize(keys.len() * self.learner.model.dim(), 0.0);
        client.pull(WEIGHTS, keys, &mut b.weights)?;
        Ok(())
    }

    /// The step of `bufs.ready` while `bufs.next`'s pull is in flight; `next` becomes ready.
    fn prefetch_step(
        &self,
        client: &mut dyn ParamClient,
        bufs: &mut StepBuffers,
        metrics: &mut Metrics,
    ) -> Result<(), WorkerError> {
        let next = &mut bufs.next;
        next.batch.seal();
        client.pull_start(WEIGHTS, next.batch.keys())?;
        self.gradients(bufs, true, metrics);
        let next = &mut bufs.next;
        next.weights.resize(next.batch.keys().len() * self.learner.model.dim(), 0.0);
        client.pull_finish(WEIGHTS, next.batch.keys(), &mut next.weights)?;
        self.push_and_clock(client, bufs)?;
        std::mem::swap(&mut bufs.next, &mut bufs.ready);
        Ok(())
    }

    /// Gradient, push and clock of the pulled batch (`ready` or `next`).
    fn learn(
        &self,
        client: &mut dyn ParamClient,
        bufs: &mut StepBuffers,
        ready: bool,
        metrics: &mut Metrics,
    ) -> Result<(), WorkerError> {
        self.gradients(bufs, ready, metrics);
        self.push_and_clock(client, bufs)
    }

    /// Summed gradients of the pulled batch (`ready` or `next`) into the push buffers.
    fn gradients(&self, b: &mut StepBuffers, ready: bool, metrics: &mut Metrics) {
        let p = if ready { &b.ready } else { &b.next };
        let loss = self.learner.loss;
        self.learner.batch_gradients(&p.batch, &p.weights, &mut b.grads, &mut b.touched, &mut b.scratch, |s, y, w| {
            metrics.add(loss.predict(s), y, w)
        });
        let dim = self.learner.model.dim();
        compact_touched(p.batch.keys(), &b.grads, &b.touched, dim, &mut b.push_keys, &mut b.push_grads);
    }

    /// Pushes the gradients in the push buffers and ends the step.
    fn push_and_clock(&self, client: &mut dyn ParamClient, b: &StepBuffers) -> Result<(), WorkerError> {
        if !b.push_keys.is_empty() {
            client.push(WEIGHTS, &b.push_keys, &b.push_grads)?;
        }
        client.clock()?;
        Ok(())
    }
}

/// Scores every example of `reader`'s share through `client` (pulls only), for a holdout.
pub fn evaluate(
    learner: &Learner,
    inputs: &Inputs,
    rank: usize,
    world: usize,
    batch_size: usize,
    client: &mut dyn ParamClient,
) -> Result<Metrics, WorkerError> {
    let dim = learner.model.dim();
    let mut reader = inputs.reader(rank, world)?;
    let mut metrics = Metrics::new(true);
    let (mut batch, mut weights, mut scratch) = (MiniBatch::new(), Vec::new(), BatchScratch::default());
    let mut flush = |batch: &mut MiniBatch, metrics: &mut Metrics| -> Result<(), WorkerError> {
        batch.seal();
        weights.resize(batch.keys().len() * dim, 0.0);
        client.pull(WEIGHTS, batch.keys(), &mut weights)?;
        learner.batch_scores(batch, &weights, &mut scratch, |s, y, w| metrics.add(learner.loss.predict(s), y, w));
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
