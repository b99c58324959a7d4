//! Micro-batching: one scoring thread takes the rows of every request waiting, up to a row cap
//! and a delay cap, and scores them together, so that a deep model's step runs over many
//! clients' rows at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_core::Example;
use tokio::sync::oneshot;

use super::loaded::Loaded;
use super::ServeMetrics;
use crate::predict::Predictor;

/// One request's rows, the model they were read for, and where its predictions go.
pub struct Job {
    /// The model the rows were featurized for: they are scored by it, even if another has
    /// been loaded since.
    pub model: Arc<Loaded>,
    /// The rows.
    pub rows: Vec<Example>,
    /// Receives one prediction per row, in order.
    pub reply: oneshot::Sender<Vec<f32>>,
}

/// When a batch is closed.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rows after which no more requests join a batch.
    pub max_rows: usize,
    /// The longest the first request of a batch waits for others to join.
    pub max_delay: Duration,
}

/// Scores jobs until every sender is gone. `arriving` counts requests whose rows are being
/// read: the batch waits (up to the delay cap) only while some are, so a lone client is
/// never delayed.
pub fn run(jobs: Receiver<Job>, limits: Limits, arriving: Arc<AtomicUsize>, metrics: Arc<ServeMetrics>) {
    let mut batch: Vec<Job> = Vec::new();
    let mut predictions = Vec::new();
    while let Ok(first) = jobs.recv() {
        let deadline = Instant::now() + limits.max_delay;
        let mut rows = first.rows.len();
        batch.push(first);
        while rows < limits.max_rows {
            let next = match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if arriving.load(Ordering::Acquire) == 0 || left.is_zero() {
                        break;
                    }
                    // Timed out, or every sender gone: the batch is closed either way.
                    jobs.recv_timeout(left).ok()
                }
            };
            let Some(job) = next else { break };
            rows += job.rows.len();
            batch.push(job);
        }
        metrics.batch_rows.observe(rows as f64);
        // Requests read for the same model are scored together; after a reload, a batch may
        // hold two runs.
        while !batch.is_empty() {
            let model = batch[0].model.clone();
            let end = batch.iter().take_while(|j| Arc::ptr_eq(&j.model, &model)).count();
            predictions.clear();
            let mut predictor = Predictor::new(&model.model);
            let mut emit = |p: f32, _: f32, _: f32| predictions.push(p);
            for job in &batch[..end] {
                for ex in &job.rows {
                    predictor.push(ex, &mut emit);
                }
            }
            predictor.flush(&mut emit);
            let mut at = 0;
            for job in batch.drain(..end) {
                let n = job.rows.len();
                // A client that went away no longer wants its answer.
                let _ = job.reply.send(predictions[at..at + n].to_vec());
                at += n;
            }
        }
    }
}
