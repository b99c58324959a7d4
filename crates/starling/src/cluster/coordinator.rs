//! The coordinator: registers servers and workers, hands out the shard map and ranks, gates worker
//! clocks by the staleness rule, watches heartbeats, drives checkpoints and ends the job.
//!
//! One thread per connection reads messages into a shared [`State`]; the main thread runs the
//! job's phases and the timers. Nothing here touches model rows.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use starling_ps::control::{self, FromCoordinator, Piece, ProcessId, TestMetrics, ToCoordinator, WorkerProgress};
use starling_ps::frame::{self, Hello, Kind};
use starling_ps::tls::{Stream, Tls};
use starling_ps::{checkpoint, ClientStats, ClockTable, Manifest, ShardFileInfo, StalenessHistogram, StatsSnapshot};

use super::pieces::Pool;
use super::plan::Plan;
use super::ClusterError;
use crate::config::{OnCheckpointError, WorkerLoss};

/// How long a new connection has to finish its TLS handshake and send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at most that have not authenticated yet; more are refused at once.
const MAX_UNAUTHENTICATED: usize = 256;
/// Most worker slots an elastic job grows to.
const MAX_WORKERS: usize = 4096;
/// How long the coordinator waits for every process to register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the coordinator waits for a lost process's replacement to register.
pub const REPLACE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an elastic job's waiting workers hear that they are still waited for.
const PING_EVERY: Duration = Duration::from_secs(1);
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
    /// Lost processes replaced (of `cluster.max_restarts`).
    pub restarts: u32,
    /// Every recovery: what was lost, where the job went back to, and what it cost.
    pub recoveries: Vec<RecoveryReport>,
    /// An elastic job's workers that joined it after it started.
    pub workers_joined: Vec<String>,
    /// An elastic job's workers that left it (or were lost) before its end, with why.
    pub workers_left: Vec<String>,
}

/// One recovery from lost processes.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// The processes lost, with why.
    pub lost: Vec<String>,
    /// `"rollback"` (every table and worker went back to the cut) or `"replace"` (under ASP only
    /// the lost worker's replacement went back; the others never stopped).
    pub kind: String,
    /// The checkpoint gone back to, or `"the job's start"`.
    pub to: String,
    /// Steps done since that cut that the workers redo.
    pub steps_redone: u64,
    /// Seconds from the loss to training again.
    pub seconds: f64,
}

/// A connected process.
struct Peer {
    name: String,
    /// `None` in a slot a restarted coordinator keeps for a process yet to re-register.
    writer: Option<Arc<Mutex<Stream>>>,
    last_seen: Instant,
    gone: bool,
    process: ProcessId,
    /// Which occupant of its slot this is: messages of a replaced one's connection are ignored.
    incarnation: u64,
}

impl Peer {
    fn send(&self, msg: &FromCoordinator) {
        // A failed send shows up as this peer's disconnect on its reader thread.
        if let Some(w) = &self.writer {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let _ = control::send(&mut *w, msg);
        }
    }

    /// The slot of `name`, kept by a restarted coordinator until its process re-registers.
    fn awaited(name: String) -> Peer {
        let process = ProcessId { host: String::new(), pid: 0 };
        Peer { name, writer: None, last_seen: Instant::now(), gone: true, process, incarnation: 0 }
    }
}

struct ServerSlot {
    peer: Peer,
    addr: String,
    /// The occupant has its assignment.
    assigned: bool,
    /// The occupant served this share under the coordinator before this one: it rolls back
    /// instead of taking an assignment.
    rejoined: bool,
    ready: bool,
    ckpt: Option<ShardFileInfo>,
    load: Option<StatsSnapshot>,
}

struct WorkerSlot {
    peer: Peer,
    /// The occupant has its assignment.
    assigned: bool,
    pending: Option<u64>,
    done: bool,
    lost: Option<String>,
    /// A data-plane call failed: since when, and why.
    stalled: Option<(Instant, String)>,
    /// Under ASP: lost, and its replacement resumes from its cut alone.
    replacing: Option<Instant>,
    /// An elastic job's worker waiting for its next piece of the input.
    asking: bool,
    /// An elastic job's worker that left (or was lost): the job goes on without it, and its
    /// slot is free for one that joins.
    left: bool,
    progress: WorkerProgress,
    last_pass: (u64, f64),
}

impl ServerSlot {
    fn awaited(id: usize) -> Self {
        let peer = Peer::awaited(format!("server {id}"));
        ServerSlot { peer, addr: String::new(), assigned: false, rejoined: false, ready: false, ckpt: None, load: None }
    }
}

impl WorkerSlot {
    fn awaited(rank: usize) -> Self {
        WorkerSlot {
            peer: Peer::awaited(format!("worker {rank}")),
            assigned: false,
            pending: None,
            done: false,
            lost: None,
            stalled: None,
            replacing: None,
            asking: false,
            left: false,
            progress: WorkerProgress::default(),
            last_pass: (0, 0.0),
        }
    }
}

/// A checkpoint being taken.
struct Ckpt {
    dir: PathBuf,
    requested: bool,
    final_one: bool,
    /// A server could not write its shard file: who, and why.
    failed: Option<String>,
}

/// Where a rollback goes: the newest checkpoint this job wrote, or where it started.
struct Cut {
    dir: Option<PathBuf>,
    clocks: Vec<u64>,
    /// Steps of the slowest worker there (of those training: not an elastic job's idle or
    /// departed ones).
    steps_done: u64,
    /// An elastic job's input not yet trained on there.
    pieces: Option<Vec<Piece>>,
}

impl Cut {
    fn describe(&self) -> String {
        self.dir.as_ref().map_or_else(|| "the job's start".to_string(), |d| d.display().to_string())
    }

    /// The checkpoint a server loads its rows from, as the messages carry it.
    fn resume_from(&self) -> Option<String> {
        self.dir.as_ref().map(|d| d.display().to_string())
    }

    /// Worker `rank`'s clock at the cut; one that joined an elastic job since starts level with
    /// the slowest.
    fn clock_of(&self, rank: usize) -> u64 {
        self.clocks.get(rank).copied().unwrap_or(self.steps_done)
    }

    /// A live server's order to serve this cut afresh.
    fn rollback(&self, epoch: u64) -> FromCoordinator {
        FromCoordinator::Rollback { resume_from: self.resume_from(), steps_done: self.steps_done, epoch }
    }
}

/// Lost processes being replaced while every table is back at the cut.
struct Recovery {
    /// When a slot was last filled or a server last became ready: the wait times out from here.
    progress_at: Instant,
    /// When the first lost process was last heard from: the time lost counts from there.
    silent_since: Instant,
    lost: Vec<String>,
    clocks_before: Vec<u64>,
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
    cut: Cut,
    recovery: Option<Recovery>,
    restarts: u32,
    recoveries: Vec<RecoveryReport>,
    incarnations: u64,
    /// The job is over (ended or failed): connections closing now are expected.
    over: bool,
    /// The model is saved and the servers are told to stop: a loss now costs nothing.
    ending: bool,
    /// Rollbacks so far: a server's readiness counts only for the latest.
    epoch: u64,
    /// An elastic job's pieces of input: who holds which, and which wait.
    pool: Option<Pool>,
    /// What the workers of an elastic job that left had done (their slots may be reused).
    departed: WorkerProgress,
    joined: Vec<String>,
    left: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    plan: Plan,
    /// TLS on every connection, when the job has it.
    tls: Option<Tls>,
    /// Connections not yet authenticated (bounded: a flood of idle ones is refused).
    waiting: AtomicUsize,
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

    /// Lets every waiting worker whose next step the rule allows start it, and hands waiting
    /// pieces of an elastic job's input out, unless a checkpoint is being taken.
    fn release(&mut self) {
        if self.ckpt.is_some() || self.recovery.is_some() {
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
        self.hand_out_pieces();
    }

    /// Gives every worker asking for a piece the next one; once no input is left (none waits
    /// and none is held), tells them so. One asking while pieces are held by others waits: a
    /// worker that leaves gives the rest of its piece back.
    fn hand_out_pieces(&mut self) {
        let Some(pool) = &mut self.pool else { return };
        for rank in 0..self.workers.len() {
            let w = &mut self.workers[rank];
            if !w.asking || w.peer.gone {
                continue;
            }
            let clock = self.clocks.clocks()[rank];
            let msg = match pool.take(rank) {
                Some(piece) => {
                    // An idle worker holds nobody back; back at work, it goes on level with
                    // the slowest active one, so the staleness rule does not stall the others.
                    let clock = clock.max(self.clocks.min_active().unwrap_or(clock));
                    self.clocks.set(rank, clock);
                    FromCoordinator::Piece { piece: Some(piece), clock }
                }
                None if pool.drained() => FromCoordinator::Piece { piece: None, clock },
                None => continue,
            };
            w.asking = false;
            w.peer.send(&msg);
        }
    }

    /// An elastic job's worker `rank` left or was lost: the rest of its piece waits for another
    /// worker, and the job goes on without it.
    fn worker_leaves(&mut self, rank: usize, why: &str) {
        let w = &mut self.workers[rank];
        w.peer.gone = true;
        w.left = true;
        w.asking = false;
        w.pending = None;
        w.assigned = false;
        self.departed.examples += w.progress.examples;
        self.departed.loss_sum += w.progress.loss_sum;
        self.departed.stats.merge(&w.progress.stats);
        w.progress = WorkerProgress::default();
        let name = w.peer.name.clone();
        let back = self.pool.as_mut().and_then(|p| p.give_back(rank));
        self.clocks.lose(rank);
        let training = self.workers.iter().filter(|w| !w.peer.gone && !w.left).count();
        let rest = back.map_or_else(String::new, |p| format!("; {p} goes back to the others"));
        crate::errln!("coordinator: {name} {why}{rest}; {training} workers train");
        self.left.push(format!("{name}: {why}"));
        self.release();
    }

    /// The coordinator held the state while it talked to a store since `since` (a manifest, an
    /// object store): heartbeats could not be counted meanwhile, so nobody is silent for it.
    fn forgive_silence(&mut self, since: Instant) {
        if since.elapsed() < Duration::from_secs(1) {
            return;
        }
        let now = Instant::now();
        for p in self.servers.iter_mut().map(|s| &mut s.peer).chain(self.workers.iter_mut().map(|w| &mut w.peer)) {
            p.last_seen = p.last_seen.max(now);
        }
    }

    /// A slot was filled or a server became ready: a recovery's wait starts over.
    fn recovering_progress(&mut self) {
        if let Some(r) = &mut self.recovery {
            r.progress_at = Instant::now();
        }
    }

    /// Whether `role` is the current occupant of its slot (not one replaced since).
    fn current(&self, role: Role) -> bool {
        match role {
            Role::Server(id, inc) => self.servers.get(id).is_some_and(|s| s.peer.incarnation == inc),
            Role::Worker(rank, inc) => self.workers.get(rank).is_some_and(|w| w.peer.incarnation == inc),
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
        // A slot waiting for its assignment (a replacement of a worker that had finished, one
        // whose predecessor is still being replaced) takes no step: waiting for it would hold
        // the checkpoint, and with it every other worker's next step, forever.
        self.workers
            .iter()
            .all(|w| !w.assigned || w.done || w.lost.is_some() || w.pending.is_some() || w.asking || w.left)
    }

    /// Counts a restart; false (the job failing) once `cluster.max_restarts` are used up.
    fn restart(&mut self, what: &str, plan: &Plan) -> bool {
        let max = plan.job.cluster.max_restarts;
        self.restarts += 1;
        if self.restarts > max {
            self.fail(format!("lost {what}; no restarts left (cluster.max_restarts = {max})"));
            return false;
        }
        true
    }

    /// Every table goes back to the cut: the live servers reload it now, and once every lost
    /// process has a registered replacement the workers rewind ([`State::finish_recovery`]).
    fn begin_recovery(&mut self, what: String, silent_since: Instant, plan: &Plan) {
        if !self.restart(&what, plan) {
            return;
        }
        let max = plan.job.cluster.max_restarts;
        if let Some(r) = &mut self.recovery {
            crate::errln!("coordinator: also lost {what} (restart {} of {max})", self.restarts);
            r.lost.push(what);
            return;
        }
        crate::errln!(
            "coordinator: lost {what}; rolling every table back to {} and waiting for its replacement (restart {} of {max})",
            self.cut.describe(),
            self.restarts
        );
        if let Some(ck) = self.ckpt.take() {
            crate::errln!(
                "coordinator: abandoning checkpoint {} (it has no manifest, so it is never read)",
                ck.dir.display()
            );
            remove_incomplete(&ck.dir, plan);
        }
        self.epoch += 1;
        let rollback = self.cut.rollback(self.epoch);
        for s in self.servers.iter_mut().filter(|s| !s.peer.gone && s.assigned) {
            s.ready = false;
            s.peer.send(&rollback);
        }
        for w in &mut self.workers {
            w.pending = None;
            w.asking = false;
        }
        self.recovery = Some(Recovery {
            progress_at: Instant::now(),
            silent_since,
            lost: vec![what],
            clocks_before: self.clocks.clocks().to_vec(),
        });
    }

    /// Every lost process has a replacement and every server serves the cut: the workers go on
    /// from their clocks at the cut.
    fn finish_recovery(&mut self, plan: &Plan, training: bool) {
        let Some(r) = self.recovery.take() else { return };
        let servers: Vec<String> = self.servers.iter().map(|s| s.addr.clone()).collect();
        let clocks: Vec<u64> = (0..self.workers.len()).map(|rank| self.cut.clock_of(rank)).collect();
        let elastic = self.pool.is_some();
        if let Some(left) = &self.cut.pieces {
            // Every piece not trained on at the cut waits again; workers ask anew after the rewind.
            self.pool = Some(Pool::from_cut(left));
        }
        for (rank, w) in self.workers.iter_mut().enumerate() {
            w.pending = None;
            w.done = false;
            w.stalled = None;
            w.asking = false;
            // An elastic job's slot whose worker is gone stays free: one that comes joins.
            if w.lost.is_some() || w.left || (elastic && w.peer.gone) {
                w.left |= elastic && w.peer.gone;
                continue;
            }
            if w.assigned {
                w.peer.send(&FromCoordinator::Rewind { clock: clocks[rank], servers: servers.clone() });
            } else if training {
                w.peer.send(&worker_assignment(plan, rank, &servers, clocks[rank]));
                w.assigned = true;
            }
            w.peer.last_seen = Instant::now();
        }
        self.clocks.rewind(&clocks);
        for rank in 0..self.workers.len() {
            if self.workers[rank].lost.is_some() || self.workers[rank].left {
                self.clocks.lose(rank);
                self.worker_gone(rank);
            }
        }
        self.all_done_sent = false;
        self.evaluated = None;
        self.evaluator = None;
        let steps_redone = r.clocks_before.iter().zip(&clocks).map(|(b, c)| b.saturating_sub(*c)).sum();
        let seconds = r.silent_since.elapsed().as_secs_f64();
        let to = self.cut.describe();
        crate::errln!(
            "coordinator: recovered in {seconds:.2} s: every table is back at {to}, and the workers redo {steps_redone} steps"
        );
        self.recoveries.push(RecoveryReport { lost: r.lost, kind: "rollback".into(), to, steps_redone, seconds });
    }

    /// A process is lost: recover, go on without it, or fail, as the job's settings say.
    fn lose(&mut self, role: Role, why: String, plan: &Plan) {
        let cl = &plan.job.cluster;
        if self.ending {
            // The model is saved and the servers are told to stop: nothing is left to recover.
            let peer = match role {
                Role::Server(id, _) => &mut self.servers[id].peer,
                Role::Worker(rank, _) => &mut self.workers[rank].peer,
            };
            peer.gone = true;
            crate::errln!("coordinator: lost {} at the end of the job: {why}", peer.name);
            return;
        }
        match role {
            Role::Server(id, _) => {
                let s = &mut self.servers[id];
                if s.peer.gone {
                    return;
                }
                let silent_since = s.peer.last_seen;
                s.peer.gone = true;
                s.assigned = false;
                s.ready = false;
                let what = format!("{}: {why}", s.peer.name);
                if cl.max_restarts == 0 {
                    self.fail(format!("lost {what}"));
                } else {
                    self.begin_recovery(what, silent_since, plan);
                }
            }
            Role::Worker(rank, _) => {
                let w = &mut self.workers[rank];
                if w.peer.gone || w.lost.is_some() {
                    return;
                }
                if w.replacing.is_some() {
                    // A replacement lost before it got its share: the slot waits for another.
                    w.peer.gone = true;
                    return;
                }
                if self.pool.is_some() && !w.done {
                    // An elastic job goes on without it; the rest of its piece goes to the others.
                    self.worker_leaves(rank, &format!("was lost ({why})"));
                    return;
                }
                let silent_since = w.peer.last_seen;
                w.peer.gone = true;
                let what = format!("{}: {why}", w.peer.name);
                if w.done && self.recovery.is_none() {
                    // A worker that finished its share holds nothing the job still needs but,
                    // if it scores the holdout, that duty: another finished worker takes it.
                    // Its replacement, if one comes, waits in the slot for a rollback or the end.
                    w.assigned = false;
                    if self.pool.is_some() {
                        // An elastic job's slot is free again, and no rollback waits for it.
                        w.left = true;
                        self.clocks.lose(rank);
                    }
                    crate::errln!("coordinator: lost {what} after it finished its share");
                    self.reassign_evaluation(rank, plan);
                    return;
                }
                match cl.worker_loss() {
                    WorkerLoss::Restart => {
                        w.assigned = false;
                        if self.asp_only(plan) && self.recovery.is_none() && self.workers_assigned {
                            self.replace_worker(rank, what, silent_since, plan);
                        } else {
                            self.begin_recovery(what, silent_since, plan);
                        }
                    }
                    WorkerLoss::Fail => {
                        self.fail(format!("lost {what}; stopping the job (cluster.on_worker_loss = \"fail\")"))
                    }
                    WorkerLoss::Continue => {
                        crate::errln!(
                            "coordinator: lost {what}; continuing without it (its remaining data is skipped)"
                        );
                        w.lost = Some(what);
                        w.pending = None;
                        self.clocks.lose(rank);
                        self.worker_gone(rank);
                        self.release();
                    }
                }
            }
        }
    }

    /// Worker `rank`, lost, was scoring the holdout: the lowest finished worker still here does
    /// it instead, or the job ends without test metrics when none is.
    fn reassign_evaluation(&mut self, rank: usize, plan: &Plan) {
        if self.evaluator != Some(rank) || self.evaluated.is_some() {
            return;
        }
        let next = self.workers.iter().position(|w| w.done && w.lost.is_none() && !w.peer.gone);
        self.evaluator = next;
        match next {
            Some(r) => {
                crate::errln!("coordinator: {} scores the holdout instead", self.workers[r].peer.name);
                self.workers[r].peer.send(&FromCoordinator::AllDone { evaluate: !plan.job.data.test.is_empty() });
            }
            None => self.evaluated = Some(None),
        }
    }

    /// No table waits for every worker (ASP, no synchronous dense layers): a lost worker's
    /// replacement can go back alone while the others never stop.
    fn asp_only(&self, plan: &Plan) -> bool {
        plan.job.cluster.staleness == starling_ps::Staleness::Unbounded && !plan.tables.iter().any(|t| t.sync)
    }

    /// Under ASP: worker `rank` is lost; its replacement resumes from its clock at the cut.
    fn replace_worker(&mut self, rank: usize, what: String, silent_since: Instant, plan: &Plan) {
        if !self.restart(&what, plan) {
            return;
        }
        crate::errln!(
            "coordinator: lost {what}; the other workers go on, and its replacement resumes from step {} of {} (restart {} of {})",
            self.cut.clock_of(rank),
            self.cut.describe(),
            self.restarts,
            plan.job.cluster.max_restarts
        );
        let w = &mut self.workers[rank];
        w.replacing = Some(silent_since);
        w.pending = None;
        w.stalled = None;
        self.recoveries.push(RecoveryReport {
            lost: vec![what],
            kind: "replace".into(),
            to: self.cut.describe(),
            steps_redone: self.clocks.clocks()[rank].saturating_sub(self.cut.clock_of(rank)),
            seconds: 0.0,
        });
    }
}

/// Runs the coordinator of `plan` on `listener` until the job ends.
pub fn run(plan: Plan, listener: TcpListener) -> Result<JobReport, ClusterError> {
    let tls = plan.job.cluster.tls_files().map(|f| Tls::load(&f)).transpose()?;
    let start_clocks = plan.start_clocks.clone();
    let mut clocks = ClockTable::new(plan.workers, plan.job.cluster.gate(), 0);
    clocks.rewind(&start_clocks);
    // Every slot exists from the start, so a process may ask for its own (a pod's ordinal, a
    // lost process's rank) in any order.
    let servers = (0..plan.servers).map(ServerSlot::awaited).collect();
    let workers = (0..plan.workers).map(WorkerSlot::awaited).collect();
    let steps_done = start_clocks.iter().copied().min().unwrap_or(0);
    let (dir, pieces) = (plan.resume_from.clone(), plan.pieces_left.clone());
    let cut = Cut { dir, clocks: start_clocks.clone(), steps_done, pieces };
    let pool = plan.pieces_left.as_deref().map(Pool::from_cut);
    let (mut recovery, mut restarts) = (None, 0);
    if let Some(r) = &plan.recovering {
        // This coordinator replaces one that died: the job's processes re-register into their
        // slots, every table goes back to the cut, and training goes on from there.
        crate::errln!(
            "coordinator: replacing a lost coordinator; rolling back to {} once the job's processes re-register",
            cut.describe()
        );
        let now = Instant::now();
        let lost = vec!["the coordinator".to_string()];
        recovery = Some(Recovery { progress_at: now, silent_since: now, lost, clocks_before: start_clocks });
        restarts = r.restarts_used;
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            servers,
            workers,
            workers_assigned: false,
            clocks,
            ckpt: None,
            failure: None,
            evaluated: None,
            evaluator: None,
            all_done_sent: false,
            cut,
            recovery,
            restarts,
            recoveries: Vec::new(),
            incarnations: 0,
            over: false,
            ending: false,
            epoch: 0,
            pool,
            departed: WorkerProgress::default(),
            joined: Vec::new(),
            left: Vec::new(),
        }),
        wake: Condvar::new(),
        plan,
        tls,
        waiting: AtomicUsize::new(0),
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
    let mut st = shared.lock();
    st.over = true;
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
    let mut last_ping = Instant::now();
    let mut last_ckpt = (Instant::now(), start_step(&plan.start_clocks));
    let mut shutdown_at: Option<Instant> = None;
    // Since when an elastic job has input left and no worker.
    let mut no_workers_since: Option<Instant> = None;
    // The end-of-job checkpoints started so far (one that fails is not tried again).
    let mut finals_tried: Vec<PathBuf> = Vec::new();
    let mut st = shared.lock();
    loop {
        if let Some(why) = &st.failure {
            return Err(ClusterError::Failed(why.clone()));
        }
        let now = Instant::now();
        // Registration: a server gets its share as it registers (a replacement, the cut).
        {
            let state = &mut *st;
            let (cut, epoch) = (&state.cut, state.epoch);
            for (id, s) in state.servers.iter_mut().enumerate().filter(|(_, s)| !s.assigned && !s.peer.gone) {
                s.assigned = true;
                s.peer.last_seen = now;
                if s.rejoined {
                    s.peer.send(&cut.rollback(epoch));
                    continue;
                }
                s.peer.send(&FromCoordinator::ServerAssignment {
                    id,
                    tables: plan.tables.clone(),
                    owned: plan.map.vshards_of(id),
                    resume_from: cut.resume_from(),
                    max_frame: cl.max_frame_mib << 20,
                    threads: cl.server_threads,
                    heartbeat_ms: (cl.heartbeat_secs * 1000.0) as u64,
                    workers: plan.workers,
                    warmup_steps: plan.job.train.warmup_steps,
                    steps_done: cut.steps_done,
                    epoch,
                });
            }
        }
        let servers_ready = st.servers.iter().all(|s| s.ready && !s.peer.gone);
        // Every worker the job names (an elastic job's free slots aside) is in.
        let workers_in = st.workers.iter().all(|w| !w.peer.gone || w.left);
        if servers_ready && workers_in && !st.workers_assigned && st.recovery.is_none() {
            let addrs: Vec<String> = st.servers.iter().map(|s| s.addr.clone()).collect();
            let slowest = plan.start_clocks.iter().copied().min().unwrap_or(0);
            for rank in 0..st.workers.len() {
                if st.workers[rank].peer.gone {
                    continue;
                }
                // One that joined an elastic job before it started begins level with the slowest.
                let clock = plan.start_clocks.get(rank).copied().unwrap_or(slowest);
                st.clocks.set(rank, clock);
                let w = &mut st.workers[rank];
                w.peer.send(&worker_assignment(plan, rank, &addrs, clock));
                w.assigned = true;
                w.peer.last_seen = now;
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
        if !st.workers_assigned && st.recovery.is_none() && now > registered_by {
            let s = st.servers.iter().filter(|s| !s.peer.gone).count();
            let w = st.workers.iter().filter(|w| !w.peer.gone).count();
            st.fail(format!(
                "only {s} of {} servers and {w} of {} workers registered within {} s",
                plan.servers,
                plan.workers,
                REGISTER_TIMEOUT.as_secs()
            ));
            continue;
        }
        // Silent processes: declared lost, and fenced where this host can. One waiting for its
        // assignment has nothing to say yet, and its clock starts with the assignment.
        for id in 0..st.servers.len() {
            let s = &st.servers[id].peer;
            let assigned = st.servers[id].assigned && st.servers[id].load.is_none();
            if !s.gone && assigned && now.duration_since(s.last_seen) > timeout {
                fence(s);
                let role = Role::Server(id, s.incarnation);
                st.lose(role, format!("sent nothing for {:.0} s", timeout.as_secs_f64()), plan);
            }
        }
        for rank in 0..st.workers.len() {
            let w = &st.workers[rank];
            if !w.peer.gone && w.assigned && w.lost.is_none() && now.duration_since(w.peer.last_seen) > timeout {
                fence(&w.peer);
                let role = Role::Worker(rank, w.peer.incarnation);
                st.lose(role, format!("sent nothing for {:.0} s", timeout.as_secs_f64()), plan);
            }
            let w = &st.workers[rank];
            if let (Some((since, why)), None) = (&w.stalled, &st.recovery) {
                if now.duration_since(*since) > timeout {
                    let why = format!("{} stopped: {why}", w.peer.name);
                    st.fail(why);
                }
            }
        }
        if st.failure.is_some() {
            continue;
        }
        // Recovery: once every lost process has a replacement, go on from the cut.
        if let Some(r) = &st.recovery {
            // An elastic job needs none of its workers back: they ask for pieces when they come.
            let workers_back =
                st.pool.is_some() || st.workers.iter().all(|w| !w.peer.gone || w.lost.is_some() || w.left);
            if servers_ready && workers_back {
                // A restarted coordinator's job was training: its recovery starts training again.
                let training = st.workers_assigned || plan.recovering.is_some();
                st.finish_recovery(plan, training);
                if !st.workers_assigned && training {
                    st.workers_assigned = true;
                    train_start = Some(now);
                }
            } else if now.duration_since(r.progress_at) > REPLACE_TIMEOUT {
                // Nothing registered or became ready for that long: name what is missing.
                let servers = st.servers.iter().filter(|s| s.peer.gone || !s.ready).map(|s| s.peer.name.as_str());
                let workers = st
                    .workers
                    .iter()
                    .filter(|w| w.peer.gone && w.lost.is_none() && !w.left)
                    .map(|w| w.peer.name.as_str());
                let missing: Vec<&str> = servers.chain(workers).collect();
                let why = format!(
                    "lost {}; {} did not come back within {} s (`starling launch` restarts what dies; on a cluster the orchestrator must: see docs/cluster.md)",
                    r.lost.join("; "),
                    missing.join(", "),
                    REPLACE_TIMEOUT.as_secs()
                );
                st.fail(why);
                continue;
            }
        }
        let addrs: Vec<String> = st.servers.iter().map(|s| s.addr.clone()).collect();
        for rank in 0..st.workers.len() {
            let (clock, w) = (st.cut.clock_of(rank), &mut st.workers[rank]);
            let Some(since) = w.replacing else { continue };
            if !w.peer.gone {
                w.peer.send(&worker_assignment(plan, rank, &addrs, clock));
                w.assigned = true;
                w.peer.last_seen = now;
                w.replacing = None;
                let waited = since.elapsed().as_secs_f64();
                if let Some(r) = st.recoveries.iter_mut().rev().find(|r| r.kind == "replace") {
                    r.seconds = waited;
                }
                st.clocks.set(rank, clock);
                crate::errln!("coordinator: worker {rank} replaced after {waited:.2} s; it resumes from step {clock}");
            } else if now.duration_since(since) > REPLACE_TIMEOUT {
                let name = w.peer.name.clone();
                st.fail(format!("lost {name}, and no replacement registered within {} s", REPLACE_TIMEOUT.as_secs()));
            }
        }
        if st.pool.is_some() && st.workers_assigned && st.recovery.is_none() {
            admit_joiners(&mut st, plan, now);
            if now.duration_since(last_ping) >= PING_EVERY {
                // A worker blocked waiting for a piece or for the end notices a SIGTERM here.
                last_ping = now;
                for w in st.workers.iter().filter(|w| !w.peer.gone && (w.asking || w.done)) {
                    w.peer.send(&FromCoordinator::StillWaiting);
                }
            }
            // Input is left but every worker left: one must join before long.
            let training = st.workers.iter().any(|w| !w.peer.gone && !w.left);
            let untrained = st.pool.as_ref().map_or(0, Pool::left);
            if training || untrained == 0 {
                no_workers_since = None;
            } else if now.duration_since(*no_workers_since.get_or_insert(now)) > REPLACE_TIMEOUT {
                st.fail(format!(
                    "every worker left with {untrained} pieces of the input untrained, and none joined within {} s (start one with `starling worker`)",
                    REPLACE_TIMEOUT.as_secs()
                ));
                continue;
            }
        }
        if st.recovery.is_some() || st.failure.is_some() {
            st = shared.wake.wait_timeout(st, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
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
                    st.ckpt = Some(Ckpt {
                        dir: checkpoint::step_dir(root, step),
                        requested: false,
                        final_one: false,
                        failed: None,
                    });
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
            // An elastic job's worker waiting for a piece is idle, not done: others may give one
            // back; and one told that no input is left is done once it says so.
            let input_left = st.pool.as_ref().is_some_and(|p| !p.drained())
                || (st.pool.is_some() && st.workers.iter().any(|w| !w.peer.gone && !w.left && !w.done));
            if st.clocks.all_finished() && !st.all_done_sent && !input_left {
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
            if !st.all_done_sent {
                // A rollback sent the job back before its end: the end's checkpoints are ahead.
                finals_tried.clear();
            }
            if st.all_done_sent && st.evaluated.is_some() && st.ckpt.is_none() && shutdown_at.is_none() {
                let finals = final_dirs(plan, &st);
                // One already complete under checkpoint.dir (this step's, from before a rollback
                // or a coordinator's restart) is not written over: it may be the cut itself.
                let root = plan.job.checkpoint.dir.as_ref();
                let complete =
                    |d: &PathBuf| root.is_some_and(|r| d.starts_with(r)) && checkpoint::is_complete(d).unwrap_or(false);
                let written = |d: &PathBuf| report.checkpoints.contains(&d.display().to_string()) || complete(d);
                let looked = Instant::now();
                let next = finals.into_iter().find(|d| !finals_tried.contains(d) && !written(d));
                st.forgive_silence(looked);
                if let Some(dir) = next {
                    finals_tried.push(dir.clone());
                    st.ckpt = Some(Ckpt { dir, requested: false, final_one: true, failed: None });
                } else {
                    for s in &st.servers {
                        s.peer.send(&FromCoordinator::Shutdown);
                    }
                    shutdown_at = Some(now);
                    st.ending = true;
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

/// Gives the workers that joined a running elastic job their assignment: they start level with
/// the slowest active worker and ask for pieces like the others.
fn admit_joiners(st: &mut State, plan: &Plan, now: Instant) {
    let addrs: Vec<String> = st.servers.iter().map(|s| s.addr.clone()).collect();
    for rank in 0..st.workers.len() {
        if st.workers[rank].peer.gone || st.workers[rank].assigned {
            continue;
        }
        let clock = st.clocks.min_active().unwrap_or_else(|| st.clocks.clocks().iter().copied().max().unwrap_or(0));
        // Idle while it opens its input: it holds nobody back until it has a piece.
        st.clocks.set(rank, clock);
        st.clocks.finish(rank);
        let w = &mut st.workers[rank];
        w.peer.send(&worker_assignment(plan, rank, &addrs, clock));
        w.assigned = true;
        w.peer.last_seen = now;
        let name = w.peer.name.clone();
        let training = st.workers.iter().filter(|w| !w.peer.gone && !w.left).count();
        crate::errln!("coordinator: {name} joined the job at step {clock}; {training} workers train");
        st.joined.push(name);
    }
}

/// A worker's share of the job, to start from `start_clock`.
fn worker_assignment(plan: &Plan, rank: usize, servers: &[String], start_clock: u64) -> FromCoordinator {
    FromCoordinator::WorkerAssignment {
        rank,
        world: plan.workers,
        job: plan.job.to_toml(),
        servers: servers.to_vec(),
        map: plan.map.clone(),
        tables: plan.tables.clone(),
        start_clock,
    }
}

/// A process declared lost for its silence is killed when it runs on this host, so that it
/// cannot wake and write to the job (a stopped or hung process), and so that its launcher sees it
/// end and starts a replacement. Elsewhere the orchestrator's liveness check does this.
fn fence(peer: &Peer) {
    // Should it wake, it learns it is out of the job (the orchestrator's case: no kill here).
    peer.send(&FromCoordinator::Abort {
        reason: format!("{} was declared lost: it sent nothing for too long", peer.name),
    });
    let me = std::process::id();
    if peer.process.host == super::host_name() && peer.process.pid != me && peer.process.pid > 1 {
        crate::errln!("coordinator: killing {} (silent; declared lost)", peer.name);
        // SAFETY: kill(2) with a plain pid and signal touches no memory.
        unsafe { libc::kill(peer.process.pid as libc::pid_t, libc::SIGKILL) };
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
        checkpoint::create_dir(&ck.dir)?;
        ck.requested = true;
        let dir = ck.dir.display().to_string();
        for s in st.servers.iter_mut() {
            s.ckpt = None;
            s.peer.send(&FromCoordinator::WriteCheckpoint { dir: dir.clone() });
        }
        return Ok(None);
    }
    if let Some(why) = ck.failed.clone() {
        return abandon_checkpoint(st, plan, why);
    }
    if !st.servers.iter().all(|s| s.ckpt.is_some()) {
        return Ok(None);
    }
    let dir = ck.dir.clone();
    let examples = st.workers.iter().map(|w| w.progress.examples).sum::<u64>() + st.departed.examples;
    let slowest = st.clocks.clocks().iter().copied().min().unwrap_or(0);
    // An elastic job's idle and departed workers do not hold the warm-up back.
    let steps_done = if st.pool.is_some() { st.clocks.min_active().unwrap_or(slowest) } else { slowest };
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
        pieces_left: st.pool.as_ref().map(Pool::cut),
    };
    let io_started = Instant::now();
    let written = checkpoint::write_manifest(&dir, &manifest);
    let mut pruned = Vec::new();
    if let (Ok(()), Some(root)) = (&written, &plan.job.checkpoint.dir) {
        if dir.starts_with(root) {
            // Old checkpoints that cannot be deleted (a store without delete rights) cost space,
            // not the job.
            match checkpoint::prune(root, plan.job.checkpoint.keep) {
                Ok(p) => pruned = p,
                Err(e) => crate::errln!("coordinator: cannot delete old checkpoints under {}: {e}", root.display()),
            }
        }
    }
    st.forgive_silence(io_started);
    if let Err(e) = written {
        return abandon_checkpoint(st, plan, e.to_string());
    }
    crate::errln!("coordinator: checkpoint written to {} (step {})", dir.display(), manifest.step);
    st.cut = Cut {
        dir: Some(dir.clone()),
        clocks: manifest.worker_clocks.clone(),
        steps_done,
        pieces: manifest.pieces_left.clone(),
    };
    st.ckpt = None;
    Ok(Some((dir, pruned)))
}

/// Removes a checkpoint directory given up on, to give its space back: only under
/// `checkpoint.dir` (never `train.save`, the user's), and never one with a manifest (complete:
/// it may be the very cut a rollback goes back to).
fn remove_incomplete(dir: &Path, plan: &Plan) {
    let under_root = plan.job.checkpoint.dir.as_ref().is_some_and(|root| dir.starts_with(root));
    if under_root {
        if let Err(e) = checkpoint::remove_unfinished(dir) {
            crate::errln!("coordinator: cannot remove the unfinished checkpoint {}: {e}", dir.display());
        }
    }
}

/// A checkpoint could not be written: the previous one stays the newest complete one, and the
/// job goes on or ends as `checkpoint.on_error` says (one holding the job's model always ends it).
fn abandon_checkpoint(
    st: &mut State,
    plan: &Plan,
    why: String,
) -> Result<Option<(PathBuf, Vec<PathBuf>)>, ClusterError> {
    let Some(ck) = st.ckpt.take() else { return Ok(None) };
    remove_incomplete(&ck.dir, plan);
    let what = format!(
        "cannot write checkpoint {}: {why}; the newest complete checkpoint is still {}",
        ck.dir.display(),
        st.cut.describe()
    );
    // The model itself: `train.save`, or the final checkpoint when there is no `train.save`.
    let the_model = ck.final_one && plan.job.train.save.as_ref().is_none_or(|s| *s == ck.dir);
    if the_model || plan.job.checkpoint.on_error == OnCheckpointError::Fail {
        let setting = if the_model { "" } else { " (checkpoint.on_error = \"fail\")" };
        st.fail(format!("{what}{setting}"));
    } else {
        crate::errln!("coordinator: {what}; training goes on (checkpoint.on_error = \"continue\")");
        st.release();
    }
    Ok(None)
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
    report.examples += st.departed.examples;
    report.traffic.merge(&st.departed.stats);
    report.workers_joined = st.joined.clone();
    report.workers_left = st.left.clone();
    report.progressive_logloss = loss / n.max(1) as f64;
    report.test = st.evaluated.flatten();
    report.granted_staleness = st.clocks.observed.clone();
    report.servers = st.servers.iter().map(|s| s.load.unwrap_or_default()).collect();
    report.restarts = st.restarts;
    report.recoveries = st.recoveries.clone();
}

/// Which process a connection belongs to: its slot and which occupant of it.
#[derive(Clone, Copy)]
enum Role {
    Server(usize, u64),
    Worker(usize, u64),
}

/// Reads one connection until it closes: Hello, registration, then its messages.
fn serve_connection(sock: TcpStream, shared: &Shared) {
    let addr = sock.peer_addr().map_or("?".into(), |a| a.to_string());
    if shared.waiting.load(Ordering::Relaxed) >= MAX_UNAUTHENTICATED {
        let why = format!("{MAX_UNAUTHENTICATED} connections are already waiting to authenticate");
        return refuse(&addr, &sock, &why);
    }
    shared.waiting.fetch_add(1, Ordering::Relaxed);
    let authenticated = authenticate(sock, shared, &addr);
    shared.waiting.fetch_sub(1, Ordering::Relaxed);
    if let Some((reader, writer, buf)) = authenticated {
        serve_registered(reader, writer, buf, &addr, shared);
    }
}

/// The TLS handshake (when the job has TLS) and the Hello with the job's token, within
/// [`HELLO_TIMEOUT`]; `None` when the peer was refused.
#[allow(clippy::type_complexity)]
fn authenticate(sock: TcpStream, shared: &Shared, addr: &str) -> Option<(Stream, Arc<Mutex<Stream>>, Vec<u8>)> {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(HELLO_TIMEOUT));
    let stream = match &shared.tls {
        None => Stream::Plain(sock),
        Some(tls) => {
            let mut first = [0u8; 1];
            if sock.peek(&mut first).ok()? == 0 {
                return None;
            }
            if !starling_ps::tls::starts_tls(first[0]) {
                // A plain-TCP peer: tell it in the clear why it is refused.
                refuse(addr, &sock, starling_ps::tls::TLS_ONLY);
                return None;
            }
            match Stream::accept_tls(sock, tls) {
                Ok(s) => s,
                Err(e) => {
                    crate::errln!("coordinator: refused connection from {addr}: TLS handshake failed: {e}");
                    return None;
                }
            }
        }
    };
    let mut reader = stream.try_clone().ok()?;
    let writer = Arc::new(Mutex::new(stream));
    let refuse = |why: &str| refuse(addr, &mut *writer.lock().unwrap_or_else(|e| e.into_inner()), why);
    let mut buf = Vec::new();
    // Hello first, with the job's token; no larger than a Hello can be, before it is checked.
    match frame::read_frame(&mut reader, frame::MAX_HELLO, &mut buf) {
        Ok(h) if h.kind == Kind::Hello => match Hello::decode(&buf).and_then(|hello| hello.check(&shared.plan.token)) {
            Ok(()) => {
                let mut out = Vec::new();
                frame::write_frame(&mut out, Kind::Ack, 0, h.id, &[]);
                writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(&out).ok()?;
            }
            Err(e) => {
                refuse(&e.to_string());
                return None;
            }
        },
        Ok(h) => {
            refuse(&format!("expected Hello first, got a {:?} frame", h.kind));
            return None;
        }
        Err(e) => {
            refuse(&e.to_string());
            return None;
        }
    }
    let _ = reader.socket().set_read_timeout(None);
    Some((reader, writer, buf))
}

/// Logs a refused connection and tells the peer why, in an Error frame.
fn refuse(addr: &str, mut to: impl Write, why: &str) {
    crate::errln!("coordinator: refused connection from {addr}: {why}");
    let mut out = Vec::new();
    frame::write_frame(&mut out, Kind::Error, 0, 0, why.as_bytes());
    let _ = to.write_all(&out);
}

/// Reads an authenticated connection until it closes: its registration, then its messages.
fn serve_registered(mut reader: Stream, writer: Arc<Mutex<Stream>>, mut buf: Vec<u8>, addr: &str, shared: &Shared) {
    let refuse = |why: &str| refuse(addr, &mut *writer.lock().unwrap_or_else(|e| e.into_inner()), why);
    let role = match control::recv::<_, ToCoordinator>(&mut reader, &mut buf) {
        Ok(ToCoordinator::RegisterServer { addr: data_addr, process, slot, returning }) => {
            let mut st = shared.lock();
            st.incarnations += 1;
            let incarnation = st.incarnations;
            // A new server, the replacement of a lost one, or one coming back to a restarted
            // coordinator: in the slot it asks for, else the first free one.
            let id = match slot.or_else(|| st.servers.iter().position(|s| s.peer.gone)) {
                Some(id) if st.servers.get(id).is_some_and(|s| s.peer.gone) => id,
                Some(id) => {
                    drop(st);
                    return refuse(&format!("server {id} is taken or not part of this job"));
                }
                None => {
                    drop(st);
                    return refuse(&format!("the job already has its {} servers", shared.plan.servers));
                }
            };
            let name = format!("server {id} ({data_addr}, {process})");
            let writer = Some(writer);
            let peer = Peer { name, writer, last_seen: Instant::now(), gone: false, process, incarnation };
            let how = if returning { "re-registered" } else { "registered" };
            crate::errln!("coordinator: {} {how}", peer.name);
            st.servers[id] = ServerSlot {
                peer,
                addr: data_addr,
                assigned: false,
                rejoined: returning,
                ready: false,
                ckpt: None,
                load: None,
            };
            st.recovering_progress();
            Role::Server(id, incarnation)
        }
        Ok(ToCoordinator::RegisterWorker { process, slot, returning }) => {
            let mut st = shared.lock();
            st.incarnations += 1;
            let incarnation = st.incarnations;
            let free = |w: &WorkerSlot| w.peer.gone && w.lost.is_none();
            if shared.plan.job.cluster.elastic {
                // A worker joining an elastic job (or coming back to a restarted coordinator): a
                // new slot when none is free, or the one it asks for is beyond them (those in
                // between are free for others).
                let beyond = slot.filter(|&s| s >= st.workers.len());
                let wanted =
                    beyond.or_else(|| (slot.is_none() && !st.workers.iter().any(free)).then_some(st.workers.len()));
                if let Some(rank) = wanted.filter(|&r| r < MAX_WORKERS) {
                    while st.workers.len() <= rank {
                        let mut w = WorkerSlot::awaited(st.workers.len());
                        w.left = true;
                        st.workers.push(w);
                        let c = st.clocks.add(0);
                        st.clocks.lose(c);
                    }
                }
            }
            let rank = match slot.or_else(|| st.workers.iter().position(free)) {
                Some(rank) if st.workers.get(rank).is_some_and(free) => rank,
                Some(rank) => {
                    drop(st);
                    return refuse(&format!("worker {rank} is taken or not part of this job"));
                }
                None => {
                    drop(st);
                    return refuse(&format!("the job already has its {} workers", shared.plan.workers));
                }
            };
            let name = format!("worker {rank} ({process}, {addr})");
            let writer = Some(writer);
            let peer = Peer { name, writer, last_seen: Instant::now(), gone: false, process, incarnation };
            let how = if returning { "re-registered" } else { "registered" };
            crate::errln!("coordinator: {} {how}", peer.name);
            let old = &st.workers[rank];
            let (progress, last_pass, replacing) = (old.progress.clone(), old.last_pass, old.replacing);
            let slot = WorkerSlot {
                peer,
                // One coming back already has its share: it rewinds when the job goes on.
                assigned: returning,
                pending: None,
                done: false,
                lost: None,
                stalled: None,
                replacing,
                asking: false,
                left: false,
                progress,
                last_pass,
            };
            st.workers[rank] = slot;
            st.recovering_progress();
            if returning && st.pool.is_some() && st.recovery.is_none() && st.workers_assigned {
                // Back to a restarted coordinator of an elastic job that already went on: it
                // rewinds now and asks for a piece like a joiner.
                let clock = st.clocks.min_active().unwrap_or(st.cut.steps_done);
                st.clocks.set(rank, clock);
                st.clocks.finish(rank);
                let servers = st.servers.iter().map(|s| s.addr.clone()).collect();
                st.workers[rank].peer.send(&FromCoordinator::Rewind { clock, servers });
            }
            Role::Worker(rank, incarnation)
        }
        Ok(other) => return refuse(&format!("expected a registration, got a {}", other.name())),
        Err(e) => return refuse(&e.to_string()),
    };
    shared.wake.notify_all();
    loop {
        let msg = control::recv::<_, ToCoordinator>(&mut reader, &mut buf);
        let mut st = shared.lock();
        match msg {
            Ok(m) => handle(&mut st, &shared.plan, role, m),
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
fn handle(st: &mut State, plan: &Plan, role: Role, msg: ToCoordinator) {
    if !st.current(role) {
        return;
    }
    match role {
        Role::Server(id, _) => {
            st.servers[id].peer.last_seen = Instant::now();
            match msg {
                // The answer to an assignment or rollback overtaken by a later rollback.
                ToCoordinator::ServerReady { epoch, .. } if epoch != st.epoch => {}
                ToCoordinator::ServerReady { rows_loaded, addr, .. } => {
                    if rows_loaded > 0 {
                        crate::errln!("coordinator: {} loaded {rows_loaded} rows", st.servers[id].peer.name);
                    }
                    st.servers[id].addr = addr;
                    st.servers[id].ready = true;
                    st.recovering_progress();
                }
                // Replies about a checkpoint given up on (its directory removed) are stale.
                ToCoordinator::CheckpointWritten { dir, info } => {
                    if st.ckpt.as_ref().is_some_and(|ck| ck.dir.display().to_string() == dir) {
                        st.servers[id].ckpt = Some(info);
                    }
                }
                ToCoordinator::CheckpointFailed { dir, message } => {
                    let who = st.servers[id].peer.name.clone();
                    if let Some(ck) = st.ckpt.as_mut().filter(|ck| ck.dir.display().to_string() == dir) {
                        ck.failed.get_or_insert(format!("{who}: {message}"));
                    }
                }
                ToCoordinator::Load { stats } => st.servers[id].load = Some(stats),
                ToCoordinator::Failed { message } => {
                    let name = st.servers[id].peer.name.clone();
                    st.fail(format!("{name} failed: {message}"));
                }
                ToCoordinator::Heartbeat { .. } => {}
                other => st.fail(format!("{} sent an unexpected {}", st.servers[id].peer.name, other.name())),
            }
        }
        Role::Worker(rank, _) => {
            st.workers[rank].peer.last_seen = Instant::now();
            match msg {
                ToCoordinator::Stalled { reason } => {
                    if st.recovery.is_none() {
                        crate::errln!("coordinator: {} stalled: {reason}", st.workers[rank].peer.name);
                    }
                    st.workers[rank].stalled = Some((Instant::now(), reason));
                }
                ToCoordinator::Heartbeat { progress: Some(p) } => st.workers[rank].progress = p,
                ToCoordinator::Heartbeat { progress: None } => {}
                // While every table goes back to a cut, what a worker did is void: its rewind
                // resets its clock, and a finish heard now must not reach the rebuilt servers.
                ToCoordinator::Clock { .. } | ToCoordinator::Done { .. } | ToCoordinator::Evaluated { .. }
                    if st.recovery.is_some() => {}
                ToCoordinator::Clock { clock } => {
                    // It went on after a stall (the rewind it waited for came).
                    st.workers[rank].stalled = None;
                    if let Some(pool) = &mut st.pool {
                        pool.stepped(rank);
                    }
                    st.clocks.advance(rank, clock);
                    st.workers[rank].pending = Some(clock);
                    st.release();
                }
                ToCoordinator::Done { clock, progress, last_pass } => {
                    st.workers[rank].stalled = None;
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
                ToCoordinator::NextPiece | ToCoordinator::Leave { .. } if st.pool.is_none() => st.fail(format!(
                    "{} asked for pieces of the input of a job that is not elastic",
                    st.workers[rank].peer.name
                )),
                // During a rollback the worker asks again after its rewind.
                ToCoordinator::NextPiece if st.recovery.is_some() => {}
                ToCoordinator::NextPiece => {
                    if let Some(pool) = &mut st.pool {
                        pool.finished(rank);
                    }
                    st.workers[rank].asking = true;
                    st.clocks.finish(rank);
                    st.release();
                }
                // A second leave (one sent while idle and one at a step's end) is the same leave.
                ToCoordinator::Leave { .. } if st.workers[rank].left => {}
                ToCoordinator::Leave { progress, finished } => {
                    let w = &mut st.workers[rank];
                    w.progress = progress;
                    if w.done {
                        // Nothing of the input is left with it; any evaluation duty moves on.
                        let name = w.peer.name.clone();
                        w.peer.gone = true;
                        w.left = true;
                        w.assigned = false;
                        w.peer.send(&FromCoordinator::Shutdown);
                        st.clocks.lose(rank);
                        crate::errln!("coordinator: {name} left the job after it finished its share");
                        st.left.push(format!("{name}: left the job after it finished its share"));
                        st.reassign_evaluation(rank, plan);
                        return;
                    }
                    if finished {
                        if let Some(pool) = &mut st.pool {
                            pool.finished(rank);
                        }
                    }
                    st.worker_leaves(rank, "left the job");
                    st.workers[rank].peer.send(&FromCoordinator::Shutdown);
                }
                // One elastic worker that fails (a joiner that cannot read the input, say) leaves
                // while others train; the last one fails the job.
                ToCoordinator::Failed { message }
                    if st.pool.is_some() && st.workers.iter().filter(|w| !w.peer.gone && !w.left).count() > 1 =>
                {
                    st.worker_leaves(rank, &format!("failed: {message}"));
                }
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
    if st.over || !st.current(role) {
        return;
    }
    let why = format!("connection closed ({why})");
    match role {
        Role::Server(id, _) => {
            if st.servers[id].load.is_none() {
                st.lose(role, why, plan);
            }
            st.servers[id].peer.gone = true;
        }
        Role::Worker(..) => st.lose(role, why, plan),
    }
}
