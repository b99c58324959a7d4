//! Running a job on a cluster of processes: the coordinator, server and worker roles, and the
//! local launcher (design.md, decisions 4, 5, 8, 9).
//!
//! Every process but the coordinator needs only the coordinator's address and the job's token:
//! the coordinator resolves the job once and hands out the shard map, ranks and config.

pub mod coordinator;
pub mod launch;
pub mod link;
pub mod pieces;
pub mod plan;
pub mod server_role;
pub mod worker_role;

use std::sync::atomic::{AtomicI32, Ordering};

use crate::config::ConfigError;
use crate::input::InputError;
use crate::worker::WorkerError;

/// Environment variable holding the job's shared secret.
pub const TOKEN_ENV: &str = "STARLING_TOKEN";
/// Environment variable holding the coordinator's address.
pub const COORDINATOR_ENV: &str = "STARLING_COORDINATOR";

/// Why a cluster process stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The job config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading input failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The worker loop failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// Transport, coordinator or checkpoint trouble.
    #[error(transparent)]
    Ps(#[from] starling_ps::PsError),
    /// The job failed; the message says where.
    #[error("{0}")]
    Failed(String),
    /// A checkpoint cannot be resumed by this job.
    #[error("cannot resume from {path}: {message}")]
    Incompatible {
        /// The checkpoint.
        path: String,
        /// Why.
        message: String,
    },
    /// Ctrl-C (SIGINT) or SIGTERM, the signal given, stopped the job.
    #[error("interrupted")]
    Interrupted(i32),
    /// Local I/O.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// The stop signal (SIGINT, SIGTERM) this process received; 0 while none has.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// From now on `signals` are noted for [`stop_signal`] instead of ending the process: the
/// launcher stops its children, an elastic worker leaves its job cleanly.
pub fn catch_stop_signals(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
}

/// Gives `signals` their default action back after [`catch_stop_signals`]; one caught in the
/// meantime is raised again, so it acts as if it had never been caught.
pub fn release_stop_signals(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: restoring the default disposition of a signal is always allowed.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    if let Some(sig) = stop_signal().filter(|s| signals.contains(s)) {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        // SAFETY: raise(3) sends a signal to this process; its default action now applies.
        unsafe { libc::raise(sig) };
    }
}

/// The stop signal received since [`catch_stop_signals`], if any.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// This process, as it registers with the coordinator.
pub fn this_process() -> starling_ps::control::ProcessId {
    starling_ps::control::ProcessId { host: host_name(), pid: std::process::id() }
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".into(),
    }
}

/// The job's shared secret from `flag` or the environment; a cluster never runs without one.
pub fn token(flag: Option<&str>) -> Result<Vec<u8>, ClusterError> {
    match flag.map(str::to_string).or_else(|| std::env::var(TOKEN_ENV).ok()) {
        Some(t) if !t.is_empty() => Ok(t.into_bytes()),
        _ => Err(ClusterError::Failed(format!(
            "no job token: set {TOKEN_ENV} (the same value on every process of the job) or pass --token"
        ))),
    }
}

/// A fresh random token for a local cluster.
pub fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

/// Runs the coordinator of `plan` listening on `bind`; writes the bound address to `port_file`
/// (atomically, newline-terminated) so a launcher can read it as soon as it is complete.
pub fn run_coordinator(
    plan: plan::Plan,
    bind: &str,
    port_file: Option<&std::path::Path>,
) -> Result<coordinator::JobReport, ClusterError> {
    let listener =
        std::net::TcpListener::bind(bind).map_err(|e| ClusterError::Io(format!("cannot listen on {bind}"), e))?;
    let addr = listener.local_addr().map_err(|e| ClusterError::Io("reading the listening address".into(), e))?;
    crate::errln!("coordinator: listening on {addr} for {} servers and {} workers", plan.servers, plan.workers);
    if let Some(path) = port_file {
        starling_fs::write_file(path, format!("{addr}\n").as_bytes())
            .map_err(|e| ClusterError::Io(format!("writing {}", path.display()), e))?;
    }
    coordinator::run(plan, listener)
}

/// Writes `role`'s rank to `path` (`--rank-file`), so a launcher can name the process in messages.
pub fn write_rank_file(path: Option<&std::path::Path>, rank: usize) -> Result<(), ClusterError> {
    let Some(path) = path else { return Ok(()) };
    starling_fs::write_file(path, format!("{rank}\n").as_bytes())
        .map_err(|e| ClusterError::Io(format!("writing {}", path.display()), e))
}
