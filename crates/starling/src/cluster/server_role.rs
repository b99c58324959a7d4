//! `starling server`: serve a share of the model's rows until the coordinator ends the job.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use starling_ps::control::{FromCoordinator, ToCoordinator};
use starling_ps::tcp::{serve, ServeConfig};
use starling_ps::{checkpoint, PsError, Server};

use super::link::CoordLink;
use super::ClusterError;

/// Where a server listens and whom it reports to.
pub struct ServerOptions {
    /// Coordinator address.
    pub coordinator: String,
    /// Address to listen on for workers (`0.0.0.0:0` picks a free port on every interface).
    pub bind: String,
    /// Address workers should use, when it differs from what the socket reports (a pod IP, a DNS name).
    pub advertise: Option<String>,
    /// The job's shared secret.
    pub token: Vec<u8>,
    /// Where to write the id the coordinator assigns (for launchers' messages).
    pub rank_file: Option<std::path::PathBuf>,
}

/// Runs a server until the coordinator says the job is over.
pub fn run(opts: &ServerOptions) -> Result<(), ClusterError> {
    let listener =
        TcpListener::bind(&opts.bind).map_err(|e| ClusterError::Io(format!("cannot listen on {}", opts.bind), e))?;
    let local = listener.local_addr().map_err(|e| ClusterError::Io("reading the listening address".into(), e))?;
    let addr = opts.advertise.clone().unwrap_or_else(|| local.to_string());
    let mut link = CoordLink::connect(&opts.coordinator, &opts.token, &format!("server at {addr}"))?;
    link.send(&ToCoordinator::RegisterServer { addr: addr.clone() })?;
    let FromCoordinator::ServerAssignment {
        id,
        tables,
        owned,
        resume_from,
        max_frame,
        threads,
        heartbeat_ms,
        workers,
        warmup_steps,
        steps_done,
    } = link.recv()?
    else {
        return Err(ClusterError::Failed("the coordinator sent something other than this server's assignment".into()));
    };
    super::write_rank_file(opts.rank_file.as_deref(), id)?;
    let server = Arc::new(Server::new(id, &tables, &owned));
    server.expect_workers(workers, warmup_steps, steps_done);
    let result =
        serve_assigned(&mut link, &server, listener, resume_from, max_frame, threads, heartbeat_ms, &opts.token);
    if let Err(e) = &result {
        // Best effort: the coordinator names this server's failure instead of only seeing it vanish.
        let _ = link.send(&ToCoordinator::Failed { message: e.to_string() });
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn serve_assigned(
    link: &mut CoordLink,
    server: &Arc<Server>,
    listener: TcpListener,
    resume_from: Option<String>,
    max_frame: usize,
    threads: usize,
    heartbeat_ms: u64,
    token: &[u8],
) -> Result<(), ClusterError> {
    let id = server.id();
    let mut rows_loaded = 0;
    if let Some(dir) = &resume_from {
        let dir = Path::new(dir);
        let manifest = checkpoint::read_manifest(dir)?;
        rows_loaded = checkpoint::load_into(dir, &manifest, server)?;
        crate::errln!("server {id}: loaded {rows_loaded} rows from {}", dir.display());
    }
    let endpoint = serve(listener, Arc::clone(server), ServeConfig { token: token.to_vec(), max_frame, threads })?;
    crate::errln!("server {id}: serving {} virtual shards at {}", server.tables()[0].owned().len(), endpoint.addr());
    link.start_heartbeats(Duration::from_millis(heartbeat_ms.max(10)), || None);
    link.send(&ToCoordinator::ServerReady { rows_loaded })?;
    loop {
        match link.recv() {
            Ok(FromCoordinator::WriteCheckpoint { dir }) => {
                let info = checkpoint::write_shard_file(Path::new(&dir), server)?;
                link.send(&ToCoordinator::CheckpointWritten { info })?;
            }
            Ok(FromCoordinator::WorkerGone { rank }) => server.leave(rank),
            Ok(FromCoordinator::Shutdown) => {
                link.send(&ToCoordinator::Load { stats: server.stats() })?;
                endpoint.shutdown();
                crate::errln!("server {id}: job over, {} rows held", server.stats().rows);
                return Ok(());
            }
            Ok(other) => {
                return Err(ClusterError::Failed(format!(
                    "unexpected message from the coordinator: a {}",
                    other.name()
                )))
            }
            Err(PsError::Aborted(reason)) => return Err(ClusterError::Failed(format!("job aborted: {reason}"))),
            Err(e) => return Err(e.into()),
        }
    }
}
