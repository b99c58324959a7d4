//! `starling worker`: train on this worker's slice of the input against the servers, gated by the
//! coordinator's clock, then report; rank 0 also scores the holdout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling_core::Model;
use starling_ps::control::{FromCoordinator, TestMetrics, ToCoordinator, WorkerProgress};
use starling_ps::tcp::{ClientOptions, TcpClient};
use starling_ps::{ClientStats, ParamClient, PsError, ShardMap, TableSpec, Tls, Wait};

use super::link::CoordLink;
use super::ClusterError;
use crate::cache;
use crate::config::JobConfig;
use crate::input::Inputs;
use crate::model::Net;
use crate::progress::Progress;
use crate::worker::{evaluate, Position, StepBuffers, Worker, WorkerError};
use starling_data::arrow::RecordBatch;

/// Whom a worker reports to.
pub struct WorkerOptions {
    /// Coordinator address.
    pub coordinator: String,
    /// The job's shared secret.
    pub token: Vec<u8>,
    /// Where to write the rank the coordinator assigns (for launchers' messages).
    pub rank_file: Option<std::path::PathBuf>,
    /// The rank to ask for (a lost worker's, a pod's index); any free one when `None`.
    pub slot: Option<usize>,
    /// TLS on every connection (the coordinator's and the servers'), when the job has it.
    pub tls: Option<Tls>,
}

/// How a worker reaches the servers: enough to connect again after a rollback.
struct DataPlane {
    map: ShardMap,
    tables: Vec<TableSpec>,
    token: Vec<u8>,
    name: String,
    opts: ClientOptions,
}

impl DataPlane {
    fn connect(&self, servers: &[String]) -> Result<TcpClient, PsError> {
        TcpClient::connect(servers, self.map.clone(), self.tables.clone(), &self.token, &self.name, self.opts.clone())
    }
}

/// The TCP transport plus the coordinator's clock: the cluster form of [`ParamClient`].
pub struct RemoteClient {
    /// The servers' connections: `None` while a connect after a rollback failed.
    data: Option<TcpClient>,
    plane: DataPlane,
    link: CoordLink,
    clock: u64,
    /// Steps a read lags behind the step it serves: 1 when the worker prefetches, else 0.
    read_lag: u64,
    stats: ClientStats,
    /// Traffic of the connections closed by rollbacks.
    before: ClientStats,
    /// What heartbeats report; updated once per step.
    live: Arc<Mutex<ClientStats>>,
    /// A data-plane call failed since the last rewind: the servers went away or refused.
    broken: Option<String>,
    /// The coordinator's rewind, once it came: the clock to go on from and the servers.
    rewind: Option<(u64, Vec<String>)>,
    /// The link to the coordinator failed: it died, and a new one is to be found.
    link_lost: bool,
    /// How to reach a restarted coordinator.
    rejoin: Rejoin,
}

/// How a worker re-registers with a coordinator that replaced a dead one.
struct Rejoin {
    coordinator: String,
    token: Vec<u8>,
    rank: usize,
    heartbeat: Duration,
    progress: Arc<dyn Fn() -> Option<WorkerProgress> + Send + Sync>,
    tls: Option<Tls>,
}

impl Rejoin {
    /// Connects and authenticates, with heartbeats carrying the worker's progress.
    fn connect(&self, register: ToCoordinator) -> Result<CoordLink, PsError> {
        let role = format!("worker {} on {}", self.rank, super::this_process());
        let link = CoordLink::connect(&self.coordinator, &self.token, &role, self.tls.as_ref())?;
        link.send(&register)?;
        let progress = Arc::clone(&self.progress);
        link.start_heartbeats(self.heartbeat, move || progress());
        Ok(link)
    }
}

impl RemoteClient {
    fn sync_traffic(&mut self) {
        let Some(t) = self.data.as_ref().map(TcpClient::stats) else { return };
        self.stats.keys_pulled = self.before.keys_pulled + t.keys_pulled;
        self.stats.bytes_pulled = self.before.bytes_pulled + t.bytes_pulled;
        self.stats.keys_pushed = self.before.keys_pushed + t.keys_pushed;
        self.stats.bytes_pushed = self.before.bytes_pushed + t.bytes_pushed;
    }

    /// Notes a failed data-plane call: a server lost or rolled back is the coordinator's to
    /// resolve, so the error also marks this worker as waiting for its word.
    fn data<T>(&mut self, r: Result<T, PsError>) -> Result<T, PsError> {
        if let Err(e) = &r {
            if self.broken.is_none() {
                self.broken = Some(e.to_string());
            }
        }
        r
    }

    /// The coordinator's next message; a rewind is kept and returned as [`PsError::RolledBack`].
    fn next(&mut self) -> Result<FromCoordinator, PsError> {
        match self.link.recv() {
            Ok(FromCoordinator::Rewind { clock, servers }) => {
                self.rewind = Some((clock, servers));
                Err(PsError::RolledBack { clock })
            }
            Ok(m) => Ok(m),
            Err(e) => {
                self.link_lost |= matches!(e, PsError::Disconnected { .. });
                Err(e)
            }
        }
    }

    /// Sends to the coordinator, noting a lost link.
    fn tell(&mut self, msg: &ToCoordinator) -> Result<(), PsError> {
        let r = self.link.send(msg);
        self.link_lost |= r.is_err();
        r
    }

    /// Finds the coordinator that replaced a dead one and re-registers with this worker's rank.
    fn reconnect(&mut self) -> Result<(), ClusterError> {
        let rank = self.rejoin.rank;
        crate::errln!("worker {rank}: lost the coordinator; waiting for a new one");
        let register =
            ToCoordinator::RegisterWorker { process: super::this_process(), slot: Some(rank), returning: true };
        self.link = self
            .rejoin
            .connect(register)
            .map_err(|e| ClusterError::Failed(format!("lost the coordinator, and no new one came: {e}")))?;
        self.link_lost = false;
        Ok(())
    }

    /// After a failed step: waits for the coordinator's rewind (telling it why this worker
    /// stopped, unless the rewind is what stopped it), reconnects, and returns the clock to go
    /// on from. `None` when the failure is not one a rollback mends.
    fn await_rewind(&mut self, e: &ClusterError, rank: usize) -> Result<Option<u64>, ClusterError> {
        let rolled_back = matches!(e, ClusterError::Worker(WorkerError::Ps(PsError::RolledBack { .. })))
            || matches!(e, ClusterError::Ps(PsError::RolledBack { .. }));
        if self.link_lost {
            self.reconnect()?;
        } else if !rolled_back {
            let Some(reason) = self.broken.take() else { return Ok(None) };
            crate::errln!("worker {rank}: {reason}; waiting for the coordinator");
            self.tell(&ToCoordinator::Stalled { reason })?;
        }
        loop {
            self.wait_for_rewind()?;
            let (clock, servers) = self.rewind.take().expect("waited for");
            match self.plane.connect(&servers) {
                Ok(data) => {
                    self.sync_traffic();
                    self.before = self.stats.clone();
                    self.data = Some(data);
                    self.broken = None;
                    self.clock = clock;
                    crate::errln!("worker {rank}: rolled back; going on from step {clock}");
                    return Ok(Some(clock));
                }
                Err(e) => {
                    // Another server went away meanwhile: the coordinator rolls back again.
                    let reason = e.to_string();
                    crate::errln!("worker {rank}: {reason}; waiting for the coordinator");
                    self.data = None;
                    self.tell(&ToCoordinator::Stalled { reason })?;
                }
            }
        }
    }

    /// Reads the coordinator's messages until its rewind comes, finding a new coordinator if
    /// this one dies meanwhile.
    fn wait_for_rewind(&mut self) -> Result<(), ClusterError> {
        while self.rewind.is_none() {
            if self.link_lost {
                self.reconnect()?;
            }
            match self.next() {
                // A go-ahead or a piece sent before the loss, or the end of a pass this worker
                // now redoes.
                Ok(
                    FromCoordinator::Go { .. }
                    | FromCoordinator::AllDone { .. }
                    | FromCoordinator::Piece { .. }
                    | FromCoordinator::StillWaiting,
                ) => {}
                Ok(FromCoordinator::Shutdown) => {
                    return Err(ClusterError::Failed("the job ended while this worker waited to rewind".into()))
                }
                Ok(other) => return Err(ClusterError::Failed(format!("expected a rewind, got a {}", other.name()))),
                Err(PsError::RolledBack { .. }) => {}
                Err(PsError::Aborted(reason)) => return Err(ClusterError::Failed(format!("job aborted: {reason}"))),
                Err(_) if self.link_lost => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The connection to the servers; `None` after a connect that failed, until a rewind.
    fn conn(&mut self) -> Result<&mut TcpClient, PsError> {
        self.data.as_mut().ok_or_else(|| PsError::Protocol("not connected to the servers".into()))
    }
}

impl ParamClient for RemoteClient {
    fn tables(&self) -> &[TableSpec] {
        &self.plane.tables
    }

    fn pull(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        let r = self.conn().and_then(|c| c.pull(table, keys, out));
        self.data(r)
    }

    fn pull_start(&mut self, table: u32, keys: &[u64]) -> Result<(), PsError> {
        let r = self.conn().and_then(|c| c.pull_start(table, keys));
        self.data(r)
    }

    fn pull_finish(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        let r = self.conn().and_then(|c| c.pull_finish(table, keys, out));
        self.data(r)
    }

    fn push(&mut self, table: u32, keys: &[u64], grads: &[f32]) -> Result<(), PsError> {
        let r = self.conn().and_then(|c| c.push(table, keys, grads));
        self.data(r)
    }

    fn clock(&mut self) -> Result<Wait, PsError> {
        let started = Instant::now();
        self.clock += 1;
        self.tell(&ToCoordinator::Clock { clock: self.clock })?;
        let staleness = match self.next()? {
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
    let me = super::this_process();
    let mut link = CoordLink::connect(&opts.coordinator, &opts.token, &format!("worker on {me}"), opts.tls.as_ref())?;
    // Caught from registration on: in an elastic job a SIGTERM that lands before the assignment
    // is read (a scale-down right after the pod joined) must still be a leave, not a kill.
    if own.is_none() {
        super::catch_stop_signals(&[libc::SIGTERM]);
    }
    link.send(&ToCoordinator::RegisterWorker { process: me, slot: opts.slot, returning: false })?;
    let (rank, world, job, servers, map, tables, start_clock) = match link.recv()? {
        FromCoordinator::WorkerAssignment { rank, world, job, servers, map, tables, start_clock } => {
            (rank, world, job, servers, map, tables, start_clock)
        }
        // A replacement that registered as the job ended: there is nothing left to do.
        FromCoordinator::Shutdown => return Ok(()),
        other => {
            return Err(ClusterError::Failed(format!(
                "expected this worker's assignment from the coordinator, got a {}",
                other.name()
            )))
        }
    };
    super::write_rank_file(opts.rank_file.as_deref(), rank)?;
    let mut job = JobConfig::from_toml(&job, "the job from the coordinator")?;
    // In an elastic job SIGTERM (a pod deleted, a scale-down) ends the step in progress, then
    // leaves the job; otherwise it ends the worker as it always would.
    if own.is_none() && !job.cluster.elastic {
        super::release_stop_signals(&[libc::SIGTERM]);
    }
    // Heartbeats from now on: opening the input and building its cache must not look like silence.
    let live = Arc::new(Mutex::new(ClientStats::default()));
    let progress = Arc::new(Progress::new(format!("worker {rank}"), true));
    let report: Arc<dyn Fn() -> Option<WorkerProgress> + Send + Sync> = {
        let (live, progress) = (Arc::clone(&live), Arc::clone(&progress));
        Arc::new(move || {
            let (examples, loss_sum) = progress.totals();
            let stats = live.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Some(WorkerProgress { examples, loss_sum, stats })
        })
    };
    let heartbeat = Duration::from_secs_f64(job.cluster.heartbeat_secs);
    {
        let report = Arc::clone(&report);
        link.start_heartbeats(heartbeat, move || report());
    }
    let setup = (|| -> Result<_, ClusterError> {
        let train = job.data.train.clone();
        // An elastic job's input is cut into its pieces, which any worker may read.
        let slices = if job.cluster.elastic { job.cluster.pieces() } else { world };
        let mut inputs = match own {
            Some(batches) => Inputs::from_batches(&mut job, batches, true)?.whole_slice_of(rank, world),
            None => Inputs::open(&mut job, &train, slices)?,
        };
        if let (Some(dir), false) = (job.data.cache_dir.clone(), train.is_empty()) {
            // Each worker caches its own slice: later passes and a resumed job read it back.
            let (path, _) = cache::ensure(&job, &train, &dir, "train", (rank, world))?;
            inputs.use_cache(path, job.features.hash_bits, (rank, world));
        }
        let net = Net::new(&job, &inputs.fields())?;
        let opts2 = ClientOptions {
            f16: job.cluster.f16,
            delta_keys: job.cluster.delta_keys,
            max_frame: job.cluster.max_frame_mib << 20,
            tls: opts.tls.clone(),
            ..Default::default()
        };
        let plane = DataPlane { map, tables, token: opts.token.clone(), name: format!("worker {rank}"), opts: opts2 };
        Ok((inputs, net, plane))
    })();
    let (inputs, net, plane) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = link.send(&ToCoordinator::Failed { message: e.to_string() });
            return Err(e);
        }
    };
    let rejoin = Rejoin {
        coordinator: opts.coordinator.clone(),
        token: opts.token.clone(),
        rank,
        heartbeat,
        progress: report,
        tls: opts.tls.clone(),
    };
    // A server lost before this worker reached it is the coordinator's to mend, as in a step.
    let (data, connect_error) = match plane.connect(&servers) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    let mut client = RemoteClient {
        data,
        plane,
        link,
        clock: start_clock,
        read_lag: u64::from(job.cluster.prefetching()),
        stats: ClientStats::default(),
        before: ClientStats::default(),
        live,
        broken: None,
        rewind: None,
        link_lost: false,
        rejoin,
    };
    let mut from = start_clock;
    let mut failed = connect_error.map(|e| {
        client.broken = Some(e.to_string());
        ClusterError::from(e)
    });
    let result = loop {
        let e = match failed.take() {
            Some(e) => e,
            None => match train(&job, net.step(), &inputs, rank, world, from, &mut client, &progress) {
                Ok(Trained::Ended) => break Ok(()),
                Ok(Trained::Left) => {
                    crate::errln!("worker {rank}: left the job (SIGTERM); the rest of its piece goes to the others");
                    break Ok(());
                }
                Err(e) => e,
            },
        };
        // A lost process rolls the job back to a checkpoint's cut: go on from there.
        match client.await_rewind(&e, rank) {
            Ok(Some(clock)) => from = clock,
            Ok(None) => break Err(e),
            Err(e2) => break Err(e2),
        }
    };
    if let Err(e) = &result {
        let _ = client.link.send(&ToCoordinator::Failed { message: e.to_string() });
    }
    result
}

/// An elastic job's worker leaves: the rest of its piece (unless it `finished` it) goes back.
fn leave(client: &mut RemoteClient, progress: &Progress, finished: bool) -> Result<Trained, ClusterError> {
    let (examples, loss_sum) = progress.totals();
    let progress = WorkerProgress { examples, loss_sum, stats: client.stats.clone() };
    client.tell(&ToCoordinator::Leave { progress, finished })?;
    Ok(Trained::Left)
}

/// How a worker's training ended.
enum Trained {
    /// The job is over.
    Ended,
    /// An elastic job's worker left it (SIGTERM).
    Left,
}

/// Trains from step `start_clock` to the end of the job: the passes (an elastic job's pieces),
/// the holdout if this worker scores it, and the coordinator's shutdown (until which a rollback
/// can still send it back).
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
) -> Result<Trained, ClusterError> {
    let batch_size = job.batch_size(true, world);
    let prefetch = job.cluster.prefetching();
    let mut bufs = StepBuffers::default();
    let mut last_pass = (0, 0.0);
    if job.cluster.elastic {
        // Set once the stop signal ended a piece early (rather than after its last step).
        let stopped = AtomicBool::new(false);
        let leaving = |_: u64| {
            let go_on = super::stop_signal().is_none();
            stopped.fetch_or(!go_on, Ordering::Relaxed);
            go_on
        };
        let mut finished = false;
        loop {
            if super::stop_signal().is_some() {
                return leave(client, progress, finished);
            }
            client.tell(&ToCoordinator::NextPiece)?;
            let piece = loop {
                match client.next()? {
                    FromCoordinator::Piece { piece, clock } => {
                        client.clock = clock;
                        break piece;
                    }
                    // Asked to leave while waiting: the piece before is done with, and one handed
                    // out meanwhile goes back whole.
                    FromCoordinator::StillWaiting if super::stop_signal().is_some() => {
                        return leave(client, progress, false)
                    }
                    FromCoordinator::StillWaiting => {}
                    other => {
                        return Err(ClusterError::Failed(format!(
                            "expected a piece of the input, got a {}",
                            other.name()
                        )))
                    }
                }
            };
            let Some(piece) = piece else { break };
            // The piece is read as slice `index` of `of`, the same batches whoever reads it.
            let (rank, world, workers) = (piece.index, piece.of, world);
            let pause = Some(&leaving as &(dyn Fn(u64) -> bool + Sync));
            let worker = Worker { job, model, inputs, rank, world, workers, batch_size, prefetch, pause };
            let mut pos = Position { step: 0, skip: piece.skip };
            let m = worker.pass(piece.pass, client, &mut pos, &mut bufs, progress)?;
            if stopped.load(Ordering::Relaxed) {
                return leave(client, progress, false);
            }
            finished = true;
            if piece.pass == job.train.passes {
                last_pass = (last_pass.0 + m.count(), last_pass.1 + m.loss_sum());
            }
        }
    } else {
        let worker = Worker { job, model, inputs, rank, world, workers: world, batch_size, prefetch, pause: None };
        let mut pos = Position { step: 0, skip: start_clock };
        for pass in 1..=job.train.passes {
            let m = worker.pass(pass, client, &mut pos, &mut bufs, progress)?;
            last_pass = (m.count(), m.loss_sum());
        }
        client.clock = pos.step;
    }
    if let Some(r) = inputs.bad_lines_report() {
        crate::errln!("worker {rank}: {r}");
    }
    let (examples, loss_sum) = progress.totals();
    let done = WorkerProgress { examples, loss_sum, stats: client.stats.clone() };
    client.tell(&ToCoordinator::Done { clock: client.clock, progress: done, last_pass })?;
    loop {
        match client.next()? {
            FromCoordinator::AllDone { evaluate: true } if !job.data.test.is_empty() => {
                let mut job = job.clone();
                let test = job.data.test.clone();
                let test_inputs = Inputs::open(&mut job, &test, 1)?;
                let s = evaluate(model, &test_inputs, 0, 1, batch_size, client)?.summary();
                let metrics =
                    TestMetrics { count: s.count, logloss: s.logloss, auc: s.auc, accuracy: s.accuracy, rmse: s.rmse };
                client.tell(&ToCoordinator::Evaluated { test: Some(metrics) })?;
            }
            FromCoordinator::AllDone { .. } => {}
            FromCoordinator::StillWaiting if super::stop_signal().is_some() => return leave(client, progress, true),
            FromCoordinator::StillWaiting => {}
            FromCoordinator::Shutdown => return Ok(Trained::Ended),
            other => return Err(ClusterError::Failed(format!("expected the end of training, got a {}", other.name()))),
        }
    }
}
