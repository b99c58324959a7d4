//! `starling worker`: train on this worker's slice of the input against the servers, gated by the
//! coordinator's clock, then report; rank 0 also scores the holdout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling_core::Model;
use starling_ps::control::{FromCoordinator, TestMetrics, ToCoordinator, WorkerProgress};
use starling_ps::tcp::{ClientOptions, TcpClient};
use starling_ps::{ClientStats, ParamClient, PsError, TableSpec, Wait};

use super::link::CoordLink;
use super::ClusterError;
use crate::cache;
use crate::config::JobConfig;
use crate::input::Inputs;
use crate::model::Net;
use crate::progress::Progress;
use crate::worker::{evaluate, Position, StepBuffers, Worker};
use starling_data::arrow::RecordBatch;

/// Whom a worker reports to.
pub struct WorkerOptions {
    /// Coordinator address.
    pub coordinator: String,
    /// The job's shared secret.
    pub token: Vec<u8>,
    /// Where to write the rank the coordinator assigns (for launchers' messages).
    pub rank_file: Option<std::path::PathBuf>,
}

/// The TCP transport plus the coordinator's clock: the cluster form of [`ParamClient`].
pub struct RemoteClient {
    data: TcpClient,
    link: CoordLink,
    clock: u64,
    /// Steps a read lags behind the step it serves: 1 when the worker prefetches, else 0.
    read_lag: u64,
    stats: ClientStats,
    /// What heartbeats report; updated once per step.
    live: Arc<Mutex<ClientStats>>,
}

impl RemoteClient {
    fn sync_traffic(&mut self) {
        let t = self.data.stats();
        self.stats.keys_pulled = t.keys_pulled;
        self.stats.bytes_pulled = t.bytes_pulled;
        self.stats.keys_pushed = t.keys_pushed;
        self.stats.bytes_pushed = t.bytes_pushed;
    }
}

impl ParamClient for RemoteClient {
    fn tables(&self) -> &[TableSpec] {
        self.data.tables()
    }

    fn pull(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        self.data.pull(table, keys, out)
    }

    fn pull_start(&mut self, table: u32, keys: &[u64]) -> Result<(), PsError> {
        self.data.pull_start(table, keys)
    }

    fn pull_finish(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        self.data.pull_finish(table, keys, out)
    }

    fn push(&mut self, table: u32, keys: &[u64], grads: &[f32]) -> Result<(), PsError> {
        self.data.push(table, keys, grads)
    }

    fn clock(&mut self) -> Result<Wait, PsError> {
        let started = Instant::now();
        self.clock += 1;
        self.link.send(&ToCoordinator::Clock { clock: self.clock })?;
        let staleness = match self.link.recv()? {
            FromCoordinator::Go { staleness } => staleness,
            other => {
                return Err(PsError::Aborted(format!(
                    "expected the go-ahead for step {}, got a {}",
                    self.clock,
                    other.name()
                )))
            }
        };
        // The histogram counts how stale the next step's reads are, prefetching included.
        let wait = Wait { waited: started.elapsed(), staleness: staleness + self.read_lag };
        self.stats.count_step(wait);
        self.sync_traffic();
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = self.stats.clone();
        Ok(wait)
    }

    fn finish(&mut self) -> Result<(), PsError> {
        Ok(())
    }

    fn stats(&self) -> &ClientStats {
        &self.stats
    }
}

/// Runs a worker until the job ends, on its slice of the job's input files.
pub fn run(opts: &WorkerOptions) -> Result<(), ClusterError> {
    run_on(opts, None)
}

/// Runs a worker until the job ends, on `own` record batches when given (a Spark task's
/// partition: all of it is this worker's slice), else on its slice of the job's input files.
pub fn run_on(opts: &WorkerOptions, own: Option<Arc<Vec<RecordBatch>>>) -> Result<(), ClusterError> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    // The pid names the process in the coordinator's messages (a lost worker, say).
    let host = format!("{host} pid {}", std::process::id());
    let mut link = CoordLink::connect(&opts.coordinator, &opts.token, &format!("worker on {host}"))?;
    link.send(&ToCoordinator::RegisterWorker { host })?;
    let FromCoordinator::WorkerAssignment { rank, world, job, servers, map, tables, start_clock } = link.recv()? else {
        return Err(ClusterError::Failed("the coordinator sent something other than this worker's assignment".into()));
    };
    super::write_rank_file(opts.rank_file.as_deref(), rank)?;
    let mut job = JobConfig::from_toml(&job, "the job from the coordinator")?;
    let setup = (|| -> Result<_, ClusterError> {
        let train = job.data.train.clone();
        let mut inputs = match own {
            Some(batches) => Inputs::from_batches(&mut job, batches, true)?.whole_slice_of(rank, world),
            None => Inputs::open(&mut job, &train, world)?,
        };
        if let (Some(dir), false) = (job.data.cache_dir.clone(), train.is_empty()) {
            // Each worker caches its own slice: later passes and a resumed job read it back.
            let (path, _) = cache::ensure(&job, &train, &dir, "train", (rank, world))?;
            inputs.use_cache(path, job.features.hash_bits, (rank, world));
        }
        let net = Net::new(&job, &inputs.fields())?;
        let opts2 =
            ClientOptions { f16: job.cluster.f16, max_frame: job.cluster.max_frame_mib << 20, ..Default::default() };
        let data = TcpClient::connect(&servers, map, tables, &opts.token, &format!("worker {rank}"), opts2)?;
        Ok((inputs, net, data))
    })();
    let (inputs, net, data) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = link.send(&ToCoordinator::Failed { message: e.to_string() });
            return Err(e);
        }
    };
    let live = Arc::new(Mutex::new(ClientStats::default()));
    let progress = Arc::new(Progress::new(format!("worker {rank}"), true));
    {
        let (live, progress) = (Arc::clone(&live), Arc::clone(&progress));
        link.start_heartbeats(Duration::from_secs_f64(job.cluster.heartbeat_secs), move || {
            let (examples, loss_sum) = progress.totals();
            let stats = live.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Some(WorkerProgress { examples, loss_sum, stats })
        });
    }
    let read_lag = u64::from(job.cluster.prefetching());
    let mut client = RemoteClient { data, link, clock: start_clock, read_lag, stats: ClientStats::default(), live };
    let result = train(&job, net.step(), &inputs, rank, world, start_clock, &mut client, &progress);
    if let Err(e) = &result {
        let _ = client.link.send(&ToCoordinator::Failed { message: e.to_string() });
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn train(
    job: &JobConfig,
    model: &dyn Model,
    inputs: &Inputs,
    rank: usize,
    world: usize,
    start_clock: u64,
    client: &mut RemoteClient,
    progress: &Progress,
) -> Result<(), ClusterError> {
    let batch_size = job.batch_size(true, world);
    let prefetch = job.cluster.prefetching();
    let worker = Worker { job, model, inputs, rank, world, batch_size, prefetch, pause: None };
    let mut pos = Position { step: 0, skip: start_clock };
    let mut bufs = StepBuffers::default();
    let mut last_pass = (0, 0.0);
    for pass in 1..=job.train.passes {
        let m = worker.pass(pass, client, &mut pos, &mut bufs, progress)?;
        last_pass = (m.count(), m.loss_sum());
    }
    if let Some(r) = inputs.bad_lines_report() {
        crate::errln!("worker {rank}: {r}");
    }
    let (examples, loss_sum) = progress.totals();
    let done = WorkerProgress { examples, loss_sum, stats: client.stats.clone() };
    client.link.send(&ToCoordinator::Done { clock: pos.step, progress: done, last_pass })?;
    let scores_holdout = match client.link.recv()? {
        FromCoordinator::AllDone { evaluate } => evaluate,
        FromCoordinator::Shutdown => return Ok(()),
        other => return Err(ClusterError::Failed(format!("expected the end of training, got a {}", other.name()))),
    };
    if scores_holdout {
        let mut job = job.clone();
        let test = job.data.test.clone();
        let test_inputs = Inputs::open(&mut job, &test, 1)?;
        let s = evaluate(model, &test_inputs, 0, 1, batch_size, client)?.summary();
        let metrics =
            TestMetrics { count: s.count, logloss: s.logloss, auc: s.auc, accuracy: s.accuracy, rmse: s.rmse };
        client.link.send(&ToCoordinator::Evaluated { test: Some(metrics) })?;
    }
    Ok(())
}
