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
}

/// Reused buffers of a worker's steps.
#[derive(Default)]
pub struct StepBuffers {
    batch: MiniBatch,
    weights: Vec<f32>,
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
        let mut reader = self.inputs.reader(self.rank, self.world);
        let mut metrics = Metrics::new(false);
        let mut reported = (0u64, 0f64);
        bufs.batch.clear();
        let mut step = |bufs: &mut StepBuffers, metrics: &mut Metrics| -> Result<(), WorkerError> {
            if pos.step < pos.skip {
                pos.step += 1;
            } else {
                self.step(client, bufs, metrics)?;
                pos.step += 1;
                if metrics.count() - reported.0 >= PROGRESS_EVERY {
                    let loss = metrics.loss_sum() - reported.1;
                    if !loss.is_finite() {
                        return Err(WorkerError::Diverged { step: pos.step, loss: metrics.mean_logloss() });
                    }
                    progress.add(metrics.count() - reported.0, loss);
                    reported = (metrics.count(), metrics.loss_sum());
                }
            }
            bufs.batch.clear();
            Ok(())
        };
        for_each_example(&mut reader, shuffle_for(self.job, pass, self.rank), |ex: &Example, _| {
            bufs.batch.push(ex);
            if bufs.batch.len() >= self.batch_size {
                step(bufs, &mut metrics)?;
            }
            Ok::<(), WorkerError>(())
        })?;
        if !bufs.batch.is_empty() {
            step(bufs, &mut metrics)?;
        }
        progress.add(metrics.count() - reported.0, metrics.loss_sum() - reported.1);
        if !metrics.mean_logloss().is_finite() && metrics.count() > 0 {
            return Err(WorkerError::Diverged { step: pos.step, loss: metrics.mean_logloss() });
        }
        Ok(metrics)
    }

    /// Pull, compute, push, clock: one mini-batch.
    fn step(
        &self,
        client: &mut dyn ParamClient,
        b: &mut StepBuffers,
        metrics: &mut Metrics,
    ) -> Result<(), WorkerError> {
        let dim = self.learner.model.dim();
        b.batch.seal();
        let keys = b.batch.keys();
        b.weights.resize(keys.len() * dim, 0.0);
        client.pull(WEIGHTS, keys, &mut b.weights)?;
        let loss = self.learner.loss;
        self.learner.batch_gradients(&b.batch, &b.weights, &mut b.grads, &mut b.touched, &mut b.scratch, |s, y, w| {
            metrics.add(loss.predict(s), y, w)
        });
        compact_touched(keys, &b.grads, &b.touched, dim, &mut b.push_keys, &mut b.push_grads);
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
    let mut reader = inputs.reader(rank, world);
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
