//! The coordinator: registers servers and workers, hands out the shard map and ranks, gates worker
//! clocks by the staleness rule, watches heartbeats, drives checkpoints and ends the job.
//!
//! One thread per connection reads messages into a shared [`State`]; the main thread runs the
//! job's phases and the timers. Nothing here touches model rows.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use starling_ps::control::{self, FromCoordinator, TestMetrics, ToCoordinator, WorkerProgress};
use starling_ps::frame::{self, Hello, Kind};
use starling_ps::{checkpoint, ClientStats, ClockTable, Manifest, ShardFileInfo, StalenessHistogram, StatsSnapshot};

use super::plan::Plan;
use super::ClusterError;
use crate::config::WorkerLoss;

/// How long the coordinator waits for every process to register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
/// Progress lines are logged this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What the coordinator reports at the end of a job.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobReport {
    /// Consistency mode.
    pub mode: String,
    /// Examples learned by all workers (all passes).
    pub examples: u64,
    /// Wall time from the first step to the last worker's end.
    pub train_seconds: f64,
    /// Mean progressive loss of the last pass over all workers.
    pub progressive_logloss: f64,
    /// Holdout metrics (rank 0 evaluates).
    pub test: Option<TestMetrics>,
    /// Workers given up on, with why.
    pub lost_workers: Vec<String>,
    /// Every worker's traffic and waits, summed.
    pub traffic: ClientStats,
    /// Staleness the coordinator granted, per step start.
    pub granted_staleness: StalenessHistogram,
    /// Per-server load.
    pub servers: Vec<StatsSnapshot>,
    /// Checkpoints of the job that exist at its end (directories, oldest first); older ones
    /// deleted under `checkpoint.keep` are not listed.
    pub checkpoints: Vec<String>,
}

/// A connected process.
struct Peer {
    name: String,
    writer: Arc<Mutex<TcpStream>>,
    last_seen: Instant,
    gone: bool,
}

impl Peer {
    fn send(&self, msg: &FromCoordinator) {
        // A failed send shows up as this peer's disconnect on its reader thread.
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = control::send(&mut *w, msg);
    }
}

struct ServerSlot {
    peer: Peer,
    addr: String,
    ready: bool,
    ckpt: Option<ShardFileInfo>,
    load: Option<StatsSnapshot>,
}

struct WorkerSlot {
    peer: Peer,
    pending: Option<u64>,
    done: bool,
    lost: Option<String>,
    progress: WorkerProgress,
    last_pass: (u64, f64),
}

/// A checkpoint being taken.
struct Ckpt {
    dir: PathBuf,
    requested: bool,
    final_one: bool,
}

/// Everything the connection threads and the main thread share.
struct State {
    servers: Vec<ServerSlot>,
    workers: Vec<WorkerSlot>,
    workers_assigned: bool,
    clocks: ClockTable,
    ckpt: Option<Ckpt>,
    failure: Option<String>,
    evaluated: Option<Option<TestMetrics>>,
    evaluator: Option<usize>,
    all_done_sent: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    plan: Plan,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            crate::errln!("coordinator: {why}");
            self.failure = Some(why);
        }
    }

    /// Lets every waiting worker whose next step the rule allows start it, unless a checkpoint is being taken.
    fn release(&mut self) {
        if self.ckpt.is_some() {
            return;
        }
        for w in 0..self.workers.len() {
            if let Some(step) = self.workers[w].pending {
                if self.clocks.may_start(step) {
                    let staleness = self.clocks.grant(step);
                    self.workers[w].pending = None;
                    self.workers[w].peer.send(&FromCoordinator::Go { staleness });
                }
            }
        }
    }

    /// Tells the servers that `rank` no longer counts in synchronous rounds.
    fn worker_gone(&self, rank: usize) {
        for s in &self.servers {
            s.peer.send(&FromCoordinator::WorkerGone { rank });
        }
    }

    /// True when no active worker is in the middle of a step.
    fn quiescent(&self) -> bool {
        self.workers.iter().all(|w| w.done || w.lost.is_some() || w.pending.is_some())
    }

    fn lose_worker(&mut self, rank: usize, why: String, policy: WorkerLoss) {
        let w = &mut self.workers[rank];
        if w.done || w.lost.is_some() {
            return;
        }
        let name = w.peer.name.clone();
        match policy {
            WorkerLoss::Fail => {
                self.fail(format!("lost {name}: {why}; stopping the job (cluster.on_worker_loss = \"fail\")"))
            }
            WorkerLoss::Continue => {
                crate::errln!("coordinator: lost {name}: {why}; continuing without it (its remaining data is skipped)");
                w.lost = Some(format!("{name}: {why}"));
                w.pending = None;
                self.clocks.lose(rank);
                self.worker_gone(rank);
                self.release();
            }
        }
    }
}

/// Runs the coordinator of `plan` on `listener` until the job ends.
pub fn run(plan: Plan, listener: TcpListener) -> Result<JobReport, ClusterError> {
    let start_clocks = plan.start_clocks.clone();
    let mut clocks = ClockTable::new(plan.workers, plan.job.cluster.gate(), 0);
    for (w, &c) in start_clocks.iter().enumerate() {
        clocks.advance(w, c);
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            servers: Vec::new(),
            workers: Vec::new(),
            workers_assigned: false,
            clocks,
            ckpt: None,
            failure: None,
            evaluated: None,
            evaluator: None,
            all_done_sent: false,
        }),
        wake: Condvar::new(),
        plan,
    });
    {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
    }
    let result = drive(&shared);
    // Whatever happened, tell every process so none is left waiting.
    let st = shared.lock();
    let msg = match &result {
        Ok(_) => FromCoordinator::Shutdown,
        Err(e) => FromCoordinator::Abort { reason: e.to_string() },
    };
    for s in &st.servers {
        s.peer.send(&msg);
    }
    for w in &st.workers {
        w.peer.send(&msg);
    }
    result
}

/// The job's phases, on the main thread.
fn drive(shared: &Shared) -> Result<JobReport, ClusterError> {
    let plan = &shared.plan;
    let cl = &plan.job.cluster;
    let timeout = Duration::from_secs_f64(cl.heartbeat_timeout_secs);
    let registered_by = Instant::now() + REGISTER_TIMEOUT;
    let mut report = JobReport { mode: cl.staleness.mode().to_string(), ..Default::default() };
    let mut train_start = None;
    let mut last_log = Instant::now();
    let mut last_ckpt = (Instant::now(), start_step(&plan.start_clocks));
    let mut servers_assigned = false;
    let mut shutdown_at: Option<Instant> = None;
    let mut st = shared.lock();
    loop {
        if let Some(why) = &st.failure {
            return Err(ClusterError::Failed(why.clone()));
        }
        let now = Instant::now();
        // Registration.
        if !servers_assigned && st.servers.len() == plan.servers {
            for (id, s) in st.servers.iter().enumerate() {
                s.peer.send(&FromCoordinator::ServerAssignment {
                    id,
                    tables: plan.tables.clone(),
                    owned: plan.map.vshards_of(id),
                    resume_from: plan.resume_from.as_ref().map(|p| p.display().to_string()),
                    max_frame: cl.max_frame_mib << 20,
                    threads: cl.server_threads,
                    heartbeat_ms: (cl.heartbeat_secs * 1000.0) as u64,
                    workers: plan.workers,
                    warmup_steps: plan.job.train.warmup_steps,
                    steps_done: plan.start_clocks.iter().copied().min().unwrap_or(0),
                });
            }
            servers_assigned = true;
        }
        let servers_ready = servers_assigned && st.servers.iter().all(|s| s.ready);
        if servers_ready && !st.workers_assigned && st.workers.len() == plan.workers {
            let addrs: Vec<String> = st.servers.iter().map(|s| s.addr.clone()).collect();
            for (rank, w) in st.workers.iter().enumerate() {
                w.peer.send(&FromCoordinator::WorkerAssignment {
                    rank,
                    world: plan.workers,
                    job: plan.job.to_toml(),
                    servers: addrs.clone(),
                    map: plan.map.clone(),
                    tables: plan.tables.clone(),
                    start_clock: plan.start_clocks[rank],
                });
            }
            st.workers_assigned = true;
            train_start = Some(now);
            crate::errln!(
                "coordinator: {} servers and {} workers registered; training ({}, staleness {}, batch {}{})",
                plan.servers,
                plan.workers,
                cl.staleness.mode(),
                cl.staleness,
                plan.job.batch_size(true, plan.workers),
                if cl.prefetching() { ", pulls prefetched" } else { "" }
            );
        }
        if !st.workers_assigned && now > registered_by {
            let (s, w) = (st.servers.len(), st.workers.len());
            st.fail(format!(
                "only {s} of {} servers and {w} of {} workers registered within {} s",
                plan.servers,
                plan.workers,
                REGISTER_TIMEOUT.as_secs()
            ));
            continue;
        }
        // Silent processes.
        for i in 0..st.servers.len() {
            let s = &st.servers[i].peer;
            if !s.gone && now.duration_since(s.last_seen) > timeout {
                let why = format!("lost {}: sent nothing for {:.0} s", s.name, timeout.as_secs_f64());
                st.fail(why);
            }
        }
        for rank in 0..st.workers.len() {
            let w = &st.workers[rank];
            if !w.done && w.lost.is_none() && now.duration_since(w.peer.last_seen) > timeout {
                let why = format!("sent nothing for {:.0} s", timeout.as_secs_f64());
                st.lose_worker(rank, why, cl.worker_loss());
            }
        }
        if st.failure.is_some() {
            continue;
        }
        if st.workers_assigned {
            // Periodic checkpoints.
            let min = st.clocks.min_active();
            if let (Some(root), None, Some(min)) = (&plan.job.checkpoint.dir, &st.ckpt, min) {
                let ck = &plan.job.checkpoint;
                let step = st.clocks.clocks().iter().copied().max().unwrap_or(0);
                let due_steps = ck.every_steps > 0 && min >= last_ckpt.1 + ck.every_steps;
                let due_secs = ck.every_secs > 0 && now.duration_since(last_ckpt.0).as_secs() >= ck.every_secs;
                if (due_steps || due_secs) && step > last_ckpt.1 {
                    st.ckpt = Some(Ckpt { dir: checkpoint::step_dir(root, step), requested: false, final_one: false });
                    last_ckpt = (now, step);
                }
            }
            if let Some((done, pruned)) = progress_checkpoint(&mut st, plan)? {
                // The report lists the checkpoints that exist at the end, not every one written.
                report.checkpoints.retain(|c| !pruned.iter().any(|p| p.display().to_string() == *c));
                report.checkpoints.push(done.display().to_string());
                st.release();
            }
            if now.duration_since(last_log) >= LOG_EVERY {
                last_log = now;
                log_progress(&st, train_start.unwrap_or(now));
            }
            // End of training.
            if st.clocks.all_finished() && !st.all_done_sent {
                st.all_done_sent = true;
                report.train_seconds = train_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
                // The lowest surviving rank scores the holdout, so losing rank 0 under ASP loses no metrics.
                let evaluator = st.workers.iter().position(|w| w.done && w.lost.is_none() && !w.peer.gone);
                for (rank, w) in st.workers.iter().enumerate().filter(|(_, w)| w.done) {
                    let evaluate = Some(rank) == evaluator && !plan.job.data.test.is_empty();
                    w.peer.send(&FromCoordinator::AllDone { evaluate });
                }
                st.evaluator = evaluator;
                if plan.job.data.test.is_empty() || evaluator.is_none() {
                    st.evaluated = Some(None);
                }
            }
            if st.all_done_sent && st.evaluated.is_some() && st.ckpt.is_none() && shutdown_at.is_none() {
                let finals = final_dirs(plan, &st);
                if let Some(dir) = finals.into_iter().find(|d| !report.checkpoints.contains(&d.display().to_string())) {
                    st.ckpt = Some(Ckpt { dir, requested: false, final_one: true });
                } else {
                    for s in &st.servers {
                        s.peer.send(&FromCoordinator::Shutdown);
                    }
                    shutdown_at = Some(now);
                }
            }
            if let Some(t) = shutdown_at {
                let loads_in = st.servers.iter().all(|s| s.load.is_some() || s.peer.gone);
                if loads_in || now.duration_since(t) > Duration::from_secs(10) {
                    finish_report(&mut report, &st);
                    return Ok(report);
                }
            }
        }
        st = shared.wake.wait_timeout(st, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
    }
}

/// Step of a checkpoint taken at `clocks`: the furthest worker's clock.
fn start_step(clocks: &[u64]) -> u64 {
    clocks.iter().copied().max().unwrap_or(0)
}

/// Where the end-of-job checkpoints go: `train.save`, and the checkpoint directory.
fn final_dirs(plan: &Plan, st: &State) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = &plan.job.checkpoint.dir {
        dirs.push(checkpoint::step_dir(root, start_step(st.clocks.clocks())));
    }
    if let Some(save) = &plan.job.train.save {
        dirs.push(save.clone());
    }
    dirs
}

/// Advances a checkpoint in progress; once its manifest is written, returns its directory and
/// the older checkpoints deleted to keep `checkpoint.keep`.
fn progress_checkpoint(st: &mut State, plan: &Plan) -> Result<Option<(PathBuf, Vec<PathBuf>)>, ClusterError> {
    let quiescent = st.quiescent();
    let cut = start_step(st.clocks.clocks());
    let Some(ck) = &mut st.ckpt else { return Ok(None) };
    if !ck.requested {
        // Only when no worker is mid-step do the servers' rows match the recorded clocks.
        if !ck.final_one && !quiescent {
            return Ok(None);
        }
        // Workers went on while the cut was awaited: name a periodic checkpoint by the step it
        // holds, which its manifest records, not the step it was scheduled at.
        if let (false, Some(root)) = (ck.final_one, &plan.job.checkpoint.dir) {
            ck.dir = checkpoint::step_dir(root, cut);
        }
        std::fs::create_dir_all(&ck.dir)
            .map_err(|e| ClusterError::Io(format!("creating checkpoint directory {}", ck.dir.display()), e))?;
        if let Some(parent) = ck.dir.parent() {
            // The new directory's entry must be durable before a manifest inside it can be.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        ck.requested = true;
        let dir = ck.dir.display().to_string();
        for s in st.servers.iter_mut() {
            s.ckpt = None;
            s.peer.send(&FromCoordinator::WriteCheckpoint { dir: dir.clone() });
        }
        return Ok(None);
    }
    if !st.servers.iter().all(|s| s.ckpt.is_some()) {
        return Ok(None);
    }
    let dir = ck.dir.clone();
    let examples = st.workers.iter().map(|w| w.progress.examples).sum();
    let manifest = Manifest {
        version: checkpoint::MANIFEST_VERSION,
        step: start_step(st.clocks.clocks()),
        worker_clocks: st.clocks.clocks().to_vec(),
        servers: st.servers.len(),
        tables: plan.tables.clone(),
        files: st.servers.iter().filter_map(|s| s.ckpt.clone()).collect(),
        job: plan.job.to_toml(),
        examples_seen: examples,
        passes_done: if ck.final_one { plan.job.train.passes } else { 0 },
        created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        fields: plan.fields.names.clone(),
        bias_field: plan.fields.bias,
    };
    checkpoint::write_manifest(&dir, &manifest)?;
    let mut pruned = Vec::new();
    if let Some(root) = &plan.job.checkpoint.dir {
        if dir.starts_with(root) {
            pruned = checkpoint::prune(root, plan.job.checkpoint.keep)?;
        }
    }
    crate::errln!("coordinator: checkpoint written to {} (step {})", dir.display(), manifest.step);
    st.ckpt = None;
    Ok(Some((dir, pruned)))
}

fn log_progress(st: &State, start: Instant) {
    let (mut examples, mut loss, mut stats) = (0u64, 0f64, ClientStats::default());
    for w in &st.workers {
        examples += w.progress.examples;
        loss += w.progress.loss_sum;
        stats.merge(&w.progress.stats);
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let clocks = st.clocks.clocks();
    crate::errln!(
        "coordinator: steps {}..{}, {examples} examples ({:.0}/s), running loss {:.5}, pulled {:.0} keys/s ({:.1} MB/s), pushed {:.0} keys/s ({:.1} MB/s), waited {:.1} s, staleness {}",
        clocks.iter().min().unwrap_or(&0),
        clocks.iter().max().unwrap_or(&0),
        examples as f64 / secs,
        loss / examples.max(1) as f64,
        stats.keys_pulled as f64 / secs,
        stats.bytes_pulled as f64 / secs / 1e6,
        stats.keys_pushed as f64 / secs,
        stats.bytes_pushed as f64 / secs / 1e6,
        stats.wait.as_secs_f64(),
        stats.staleness.summary(),
    );
}

fn finish_report(report: &mut JobReport, st: &State) {
    let (mut n, mut loss) = (0u64, 0f64);
    for w in &st.workers {
        report.examples += w.progress.examples;
        report.traffic.merge(&w.progress.stats);
        n += w.last_pass.0;
        loss += w.last_pass.1;
        if let Some(l) = &w.lost {
            report.lost_workers.push(l.clone());
        }
    }
    report.progressive_logloss = loss / n.max(1) as f64;
    report.test = st.evaluated.flatten();
    report.granted_staleness = st.clocks.observed.clone();
    report.servers = st.servers.iter().map(|s| s.load.unwrap_or_default()).collect();
}

/// Which process a connection belongs to.
#[derive(Clone, Copy)]
enum Role {
    Server(usize),
    Worker(usize),
}

/// Reads one connection until it closes: Hello, registration, then its messages.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let addr = stream.peer_addr().map_or("?".into(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let Ok(mut reader) = stream.try_clone() else { return };
    let writer = Arc::new(Mutex::new(stream));
    let refuse = |why: &str| {
        crate::errln!("coordinator: refused connection from {addr}: {why}");
        let mut out = Vec::new();
        frame::write_frame(&mut out, Kind::Error, 0, 0, why.as_bytes());
        let _ = writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(&out);
    };
    let mut buf = Vec::new();
    // Hello first, with the job's token.
    match frame::read_frame(&mut reader, control::MAX_CONTROL_FRAME, &mut buf) {
        Ok(h) if h.kind == Kind::Hello => match Hello::decode(&buf).and_then(|hello| hello.check(&shared.plan.token)) {
            Ok(()) => {
                let mut out = Vec::new();
                frame::write_frame(&mut out, Kind::Ack, 0, h.id, &[]);
                if writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(&out).is_err() {
                    return;
                }
            }
            Err(e) => return refuse(&e.to_string()),
        },
        Ok(h) => return refuse(&format!("expected Hello first, got a {:?} frame", h.kind)),
        Err(e) => return refuse(&e.to_string()),
    }
    let role = match control::recv::<_, ToCoordinator>(&mut reader, &mut buf) {
        Ok(ToCoordinator::RegisterServer { addr: data_addr }) => {
            let mut st = shared.lock();
            if st.servers.len() == shared.plan.servers {
                drop(st);
                return refuse(&format!("the job already has its {} servers", shared.plan.servers));
            }
            let id = st.servers.len();
            let peer =
                Peer { name: format!("server {id} ({data_addr})"), writer, last_seen: Instant::now(), gone: false };
            crate::errln!("coordinator: {} registered", peer.name);
            st.servers.push(ServerSlot { peer, addr: data_addr, ready: false, ckpt: None, load: None });
            Role::Server(id)
        }
        Ok(ToCoordinator::RegisterWorker { host }) => {
            let mut st = shared.lock();
            if st.workers.len() == shared.plan.workers {
                drop(st);
                return refuse(&format!("the job already has its {} workers", shared.plan.workers));
            }
            let rank = st.workers.len();
            let peer = Peer {
                name: format!("worker {rank} ({host}, {addr})"),
                writer,
                last_seen: Instant::now(),
                gone: false,
            };
            crate::errln!("coordinator: {} registered", peer.name);
            st.workers.push(WorkerSlot {
                peer,
                pending: None,
                done: false,
                lost: None,
                progress: WorkerProgress::default(),
                last_pass: (0, 0.0),
            });
            Role::Worker(rank)
        }
        Ok(other) => return refuse(&format!("expected a registration, got a {}", other.name())),
        Err(e) => return refuse(&e.to_string()),
    };
    shared.wake.notify_all();
    loop {
        let msg = control::recv::<_, ToCoordinator>(&mut reader, &mut buf);
        let mut st = shared.lock();
        match msg {
            Ok(m) => handle(&mut st, role, m),
            Err(e) => {
                disconnected(&mut st, &shared.plan, role, &e.to_string());
                shared.wake.notify_all();
                return;
            }
        }
        drop(st);
        shared.wake.notify_all();
    }
}

/// Applies one message from `role`.
fn handle(st: &mut State, role: Role, msg: ToCoordinator) {
    match role {
        Role::Server(id) => {
            st.servers[id].peer.last_seen = Instant::now();
            match msg {
                ToCoordinator::ServerReady { rows_loaded } => {
                    if rows_loaded > 0 {
                        crate::errln!("coordinator: {} loaded {rows_loaded} rows", st.servers[id].peer.name);
                    }
                    st.servers[id].ready = true;
                }
                ToCoordinator::CheckpointWritten { info } => st.servers[id].ckpt = Some(info),
                ToCoordinator::Load { stats } => st.servers[id].load = Some(stats),
                ToCoordinator::Failed { message } => {
                    let name = st.servers[id].peer.name.clone();
                    st.fail(format!("{name} failed: {message}"));
                }
                ToCoordinator::Heartbeat { .. } => {}
                other => st.fail(format!("{} sent an unexpected {}", st.servers[id].peer.name, other.name())),
            }
        }
        Role::Worker(rank) => {
            st.workers[rank].peer.last_seen = Instant::now();
            match msg {
                ToCoordinator::Heartbeat { progress: Some(p) } => st.workers[rank].progress = p,
                ToCoordinator::Heartbeat { progress: None } => {}
                ToCoordinator::Clock { clock } => {
                    st.clocks.advance(rank, clock);
                    st.workers[rank].pending = Some(clock);
                    st.release();
                }
                ToCoordinator::Done { clock, progress, last_pass } => {
                    st.clocks.advance(rank, clock);
                    st.clocks.finish(rank);
                    let w = &mut st.workers[rank];
                    w.done = true;
                    w.progress = progress;
                    w.last_pass = last_pass;
                    st.worker_gone(rank);
                    st.release();
                }
                ToCoordinator::Evaluated { test } => st.evaluated = Some(test),
                ToCoordinator::Failed { message } => {
                    let name = st.workers[rank].peer.name.clone();
                    st.fail(format!("{name} failed: {message}"));
                }
                other => st.fail(format!("{} sent an unexpected {}", st.workers[rank].peer.name, other.name())),
            }
        }
    }
}

/// A connection closed: fine after the end of the job, a loss before it.
fn disconnected(st: &mut State, plan: &Plan, role: Role, why: &str) {
    match role {
        Role::Server(id) => {
            st.servers[id].peer.gone = true;
            if st.servers[id].load.is_none() {
                let name = st.servers[id].peer.name.clone();
                st.fail(format!("lost {name}: connection closed ({why})"));
            }
        }
        Role::Worker(rank) => {
            st.workers[rank].peer.gone = true;
            let w = &st.workers[rank];
            let evaluating = st.all_done_sent && st.evaluator == Some(rank) && st.evaluated.is_none();
            if !w.done {
                st.lose_worker(rank, format!("connection closed ({why})"), plan.job.cluster.worker_loss());
            } else if evaluating {
                // It died while scoring the holdout: end the job without test metrics rather than wait.
                st.evaluated = Some(None);
            }
        }
    }
}
