//! `starling launch`: a local cluster of processes on one host, for development and single boxes.
//!
//! It starts a coordinator, the servers and the workers as child processes of this binary, merges
//! their logs with a prefix per process, and makes sure none outlives the job: on Ctrl-C, on any
//! process failing, or if the launcher itself dies (children get SIGKILL from the kernel), every
//! child is stopped.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{ClusterError, TOKEN_ENV};
use crate::config::{JobConfig, WorkerLoss};

/// How long the coordinator may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long processes get to exit on their own after the coordinator ends the job.
const GRACE: Duration = Duration::from_secs(10);
/// How long the others get once a process has failed (the coordinator tells them to stop).
const FAIL_GRACE: Duration = Duration::from_secs(3);

/// What to launch.
pub struct LaunchOptions {
    /// The job (its `[cluster]` section is overridden by `servers` and `workers`).
    pub job: JobConfig,
    /// Server processes.
    pub servers: usize,
    /// Worker processes.
    pub workers: usize,
    /// Where the coordinator writes its JSON report.
    pub report: Option<PathBuf>,
    /// Scratch directory for the job file and the coordinator's address.
    pub work_dir: PathBuf,
}

/// One child process and what to call it.
struct Proc {
    /// "coordinator", "server" or "worker".
    role: &'static str,
    child: Child,
    status: Option<ExitStatus>,
    /// A replacement was started for it.
    superseded: bool,
    /// Where a server or worker writes the rank the coordinator gave it (`--rank-file`).
    rank_file: Option<PathBuf>,
}

impl Proc {
    /// The rank (server id) the coordinator gave it, once it has.
    fn rank(&self) -> Option<usize> {
        let text = std::fs::read_to_string(self.rank_file.as_ref()?).ok()?;
        text.trim().parse().ok()
    }

    /// Role, rank (once the coordinator has given one) and pid: `worker 1 (pid 4242)`.
    fn name(&self) -> String {
        match self.rank() {
            Some(r) => format!("{} {r} (pid {})", self.role, self.child.id()),
            _ if self.role == "coordinator" => format!("coordinator (pid {})", self.child.id()),
            _ => format!("{} (pid {}, no rank yet)", self.role, self.child.id()),
        }
    }

    /// How much this exit explains a failed job: a process killed by a signal is what went
    /// wrong; the others (the coordinator first) usually exit because of it.
    fn blame(&self) -> u8 {
        match self.status {
            Some(s) if s.signal().is_some() => 3,
            Some(s) if !s.success() && self.role != "coordinator" => 2,
            Some(s) if !s.success() => 1,
            _ => 0,
        }
    }
}

/// Starts the cluster and waits for the job to end; an error names the process that failed.
pub fn run(opts: &LaunchOptions) -> Result<(), ClusterError> {
    super::catch_stop_signals(&[libc::SIGINT, libc::SIGTERM]);
    let exe = std::env::current_exe().map_err(|e| ClusterError::Io("finding the starling binary".into(), e))?;
    let io = |what: &str, p: &Path| format!("{what} {}", p.display());
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| ClusterError::Io(io("creating", &opts.work_dir), e))?;
    let job_file = opts.work_dir.join("job.toml");
    std::fs::write(&job_file, opts.job.to_toml()).map_err(|e| ClusterError::Io(io("writing", &job_file), e))?;
    let port_file = opts.work_dir.join("coordinator.addr");
    let _ = std::fs::remove_file(&port_file);
    // A token of the user's ($STARLING_TOKEN) lets them add workers to an elastic job by hand.
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()).unwrap_or_else(super::random_token);

    let since_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut starter = Starter {
        exe,
        addr: "127.0.0.1:0".into(),
        token,
        work_dir: opts.work_dir.clone(),
        job_file,
        port_file,
        servers: opts.servers,
        workers: opts.workers,
        report: opts.report.clone(),
        since_unix,
        tls: opts.job.cluster.tls_files(),
    };
    let max_restarts = opts.job.cluster.max_restarts;
    let mut restarts = 0;
    let mut procs: Vec<Proc> = vec![starter.coordinator(None)?];
    loop {
        match wait_for_addr(&starter.port_file, &mut procs) {
            Ok(Started::Listening(a)) => break starter.addr = a,
            // Killed before anything ran: start it afresh.
            Ok(Started::Killed(s)) if restarts < max_restarts => {
                restarts += 1;
                crate::errln!(
                    "launch: the coordinator {} before listening; starting another (restart {restarts} of {max_restarts})",
                    describe(s)
                );
                procs[0] = starter.coordinator(None)?;
            }
            Ok(Started::Killed(s)) => {
                return Err(ClusterError::Failed(format!("the coordinator {} before listening", describe(s))))
            }
            Err(e) => {
                stop_all(&mut procs);
                return Err(e);
            }
        }
    }
    let started = (|| {
        for i in 0..opts.servers {
            procs.push(starter.start("server", i, None)?);
        }
        for i in 0..opts.workers {
            procs.push(starter.start("worker", i, None)?);
        }
        Ok(())
    })();
    if let Err(e) = started {
        stop_all(&mut procs);
        return Err(e);
    }
    let cl = &opts.job.cluster;
    let policy = Policy {
        // An elastic job goes on without a lost worker (its piece goes to the others).
        spare_workers: cl.worker_loss() == WorkerLoss::Continue || cl.elastic,
        restart_servers: cl.max_restarts > 0,
        restart_workers: cl.worker_loss() == WorkerLoss::Restart,
        max_restarts: cl.max_restarts,
    };
    supervise(&mut procs, &starter, &policy, restarts)
}

/// How the coordinator's start went.
enum Started {
    /// It listens at this address.
    Listening(String),
    /// A signal ended it first.
    Killed(ExitStatus),
}

/// How to start each process of this job, the first time or as a replacement.
struct Starter {
    exe: PathBuf,
    /// The coordinator's address: where it listens once started, and where a replacement binds.
    addr: String,
    token: String,
    work_dir: PathBuf,
    job_file: PathBuf,
    port_file: PathBuf,
    servers: usize,
    workers: usize,
    report: Option<PathBuf>,
    /// When the job started: a replacement coordinator's own checkpoints are those since.
    since_unix: u64,
    /// The job's TLS files, handed to every server and worker.
    tls: Option<starling_ps::TlsFiles>,
}

impl Starter {
    /// Starts the coordinator; with `restarts_used`, one replacing a dead one, on its address.
    fn coordinator(&self, restarts_used: Option<u32>) -> Result<Proc, ClusterError> {
        let mut c = Command::new(&self.exe);
        c.args(["coordinator", "--bind", &self.addr, "--servers", &self.servers.to_string()]);
        c.args(["--workers", &self.workers.to_string(), "--config"]).arg(&self.job_file);
        c.arg("--port-file").arg(&self.port_file);
        if let Some(r) = &self.report {
            c.arg("--report").arg(r);
        }
        if let Some(n) = restarts_used {
            c.args(["--recover-since", &self.since_unix.to_string(), "--restarts-used", &n.to_string()]);
        }
        spawn("coordinator", c, &self.token, false, None)
    }

    /// Starts the `n`th process of `role` (numbered over the job's life, replacements included);
    /// a replacement asks for the `slot` of the one it replaces.
    fn start(&self, role: &'static str, n: usize, slot: Option<usize>) -> Result<Proc, ClusterError> {
        let mut c = Command::new(&self.exe);
        match role {
            "server" => c.args(["server", "--coordinator", &self.addr, "--bind", "127.0.0.1:0"]),
            _ => c.args(["worker", "--coordinator", &self.addr]),
        };
        if let Some(slot) = slot {
            c.args(["--slot", &slot.to_string()]);
        }
        if let Some(f) = &self.tls {
            c.arg("--tls-cert").arg(&f.cert).arg("--tls-key").arg(&f.key).arg("--tls-ca").arg(&f.ca);
        }
        let rank_file = self.work_dir.join(format!("{role}-{n}.rank"));
        let _ = std::fs::remove_file(&rank_file);
        spawn(role, c, &self.token, true, Some(rank_file))
    }
}

/// What the launcher does when a process dies.
struct Policy {
    /// A dead worker is the coordinator's to handle (`on_worker_loss = "continue"`).
    spare_workers: bool,
    /// A dead server is replaced (`max_restarts > 0`).
    restart_servers: bool,
    /// A dead worker is replaced (`on_worker_loss = "restart"`).
    restart_workers: bool,
    /// Replacements in all.
    max_restarts: u32,
}

/// Starts `cmd` with its output merged into ours under a `[role pid N]` prefix. Ranks are the
/// coordinator's to give (in registration order) and each process names its own in its lines, so
/// the prefix names the process by pid rather than guess a rank.
fn spawn(
    role: &'static str,
    mut cmd: Command,
    token: &str,
    prefix_stdout: bool,
    rank_file: Option<PathBuf>,
) -> Result<Proc, ClusterError> {
    if let Some(f) = &rank_file {
        cmd.arg("--rank-file").arg(f);
    }
    cmd.env(TOKEN_ENV, token).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // If the launcher dies (even by SIGKILL) the kernel kills the child: no orphans.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| ClusterError::Io(format!("starting a {role}"), e))?;
    let name = format!("{role} pid {}", child.id());
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    forward(out, format!("[{name}] "), prefix_stdout, false);
    forward(err, format!("[{name}] "), true, true);
    Ok(Proc { role, child, status: None, superseded: false, rank_file })
}

/// Copies lines from a child's pipe to our stdout or stderr.
fn forward(pipe: impl Read + Send + 'static, prefix: String, use_prefix: bool, to_stderr: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let p = if use_prefix { prefix.as_str() } else { "" };
            if to_stderr {
                crate::errln!("{p}{line}");
            } else {
                crate::outln!("{p}{line}");
            }
        }
    });
}

/// Waits until the coordinator has written its address.
fn wait_for_addr(port_file: &Path, procs: &mut [Proc]) -> Result<Started, ClusterError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(a) = std::fs::read_to_string(port_file) {
            if a.ends_with('\n') {
                return Ok(Started::Listening(a.trim().to_string()));
            }
        }
        if let Ok(Some(status)) = procs[0].child.try_wait() {
            if status.signal().is_some() {
                return Ok(Started::Killed(status));
            }
            return Err(ClusterError::Failed(format!("the coordinator {} before listening", describe(status))));
        }
        if let Some(sig) = super::stop_signal() {
            return Err(ClusterError::Interrupted(sig));
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Failed(format!(
                "the coordinator did not start listening within {} s",
                START_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the job to end; replaces a dead server or worker while `policy` allows (the
/// coordinator rolls the job back and re-admits it); stops everyone on a failure or an interrupt.
fn supervise(procs: &mut Vec<Proc>, starter: &Starter, policy: &Policy, mut restarts: u32) -> Result<(), ClusterError> {
    // The outcome, when it was decided, and how much the exit that decided it explains.
    let mut decided: Option<(Instant, Result<(), String>, u8)> = None;
    loop {
        // Ctrl-C reaches every process of the group: children dying of it are not the failure.
        if let Some(sig) = super::stop_signal() {
            crate::errln!("launch: interrupted; stopping every process");
            stop_all(procs);
            return Err(ClusterError::Interrupted(sig));
        }
        // Every exit of this round first, so the process that died is blamed rather than the
        // coordinator that noticed it a moment later and exited too.
        let mut exited = Vec::new();
        for (i, p) in procs.iter_mut().enumerate().filter(|(_, p)| p.status.is_none()) {
            if let Ok(Some(s)) = p.child.try_wait() {
                p.status = Some(s);
                exited.push(i);
            }
        }
        exited.sort_by_key(|&i| std::cmp::Reverse(procs[i].blame()));
        for i in exited {
            let p = &procs[i];
            let s = p.status.expect("just reaped");
            let blame = p.blame();
            // On a loaded machine the process that noticed a death can be reaped a round before
            // the one that died: within the grace period, a better explanation replaces it.
            let replaces = match &decided {
                None => true,
                // The coordinator ends well only once the model is saved: a process killed
                // meanwhile (one that had finished its share) did not fail the job.
                Some((_, Err(_), _)) if p.role == "coordinator" && s.success() => true,
                Some((_, Err(_), b)) => blame > *b && !s.success(),
                Some((_, Ok(()), _)) => false,
            };
            if !replaces {
                continue;
            }
            let since = decided.as_ref().map_or_else(Instant::now, |d| d.0);
            let coordinator_up = procs[0].status.is_none();
            let replace = match p.role {
                // Once the coordinator is gone, the others end because of it: nothing to replace.
                "server" => policy.restart_servers && coordinator_up,
                "worker" => policy.restart_workers && coordinator_up,
                // A coordinator that exits with an error ended the job on purpose; one killed
                // (or panicking) did not.
                _ => policy.restart_servers && (s.signal().is_some() || s.code() == Some(101)),
            };
            if !s.success() && replace && decided.is_none() && restarts < policy.max_restarts {
                restarts += 1;
                let (role, name, slot) = (p.role, p.name(), p.rank());
                crate::errln!(
                    "launch: {name} {}; starting a replacement (restart {restarts} of {})",
                    describe(s),
                    policy.max_restarts
                );
                let n = procs.iter().filter(|q| q.role == role).count();
                let started = match role {
                    "coordinator" => starter.coordinator(Some(restarts)),
                    _ => starter.start(role, n, slot),
                };
                procs[i].superseded = true;
                let started = started.and_then(|new| {
                    if role != "coordinator" {
                        procs.push(new);
                        return Ok(());
                    }
                    // The coordinator is looked up by position: its replacement takes its place.
                    let old = std::mem::replace(&mut procs[0], new);
                    procs.push(old);
                    // Those it had told the job was over are needed again: its replacement
                    // goes back to a checkpoint. They come back as new processes.
                    let ended: Vec<(&'static str, usize, Option<usize>)> = procs
                        .iter()
                        .enumerate()
                        .filter(|(_, q)| {
                            q.role != "coordinator" && !q.superseded && q.status.is_some_and(|s| s.success())
                        })
                        .map(|(j, q)| (q.role, j, q.rank()))
                        .collect();
                    for (role, j, slot) in ended {
                        procs[j].superseded = true;
                        let n = procs.iter().filter(|q| q.role == role).count();
                        procs.push(starter.start(role, n, slot)?);
                    }
                    Ok(())
                });
                if let Err(e) = started {
                    stop_all(procs);
                    return Err(e);
                }
                continue;
            }
            if !s.success() && policy.spare_workers && p.role == "worker" {
                crate::errln!("launch: {} {}; the job goes on without it", p.name(), describe(s));
            } else if !s.success() {
                let why = format!("{} {}; stopping the other processes", p.name(), describe(s));
                crate::errln!("launch: {why}");
                decided = Some((since, Err(why), blame));
            } else if p.role == "coordinator" {
                decided = Some((since, Ok(()), blame));
            }
        }
        let running = procs.iter().filter(|p| p.status.is_none()).count();
        if let Some((at, outcome, _)) = &decided {
            let grace = if outcome.is_ok() { GRACE } else { FAIL_GRACE };
            if running == 0 || at.elapsed() > grace {
                if running > 0 {
                    crate::errln!(
                        "launch: {running} processes did not exit within {} s; killing them",
                        grace.as_secs()
                    );
                }
                stop_all(procs);
                // Let the log threads drain what the children wrote last.
                std::thread::sleep(Duration::from_millis(100));
                // A stop signal that came while the children died of it is still the cause.
                if let (Err(_), Some(sig)) = (outcome, super::stop_signal()) {
                    return Err(ClusterError::Interrupted(sig));
                }
                return outcome.clone().map_err(ClusterError::Failed);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills every child still running and reaps it.
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter_mut().filter(|p| p.status.is_none()) {
        let _ = p.child.kill();
        p.status = p.child.wait().ok();
    }
}

/// How a process ended, in words: `exited with code 1`, `was killed by signal 9 (SIGKILL)`.
fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        _ => "ended with an unknown status".into(),
    }
}

/// The usual name of a signal.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
