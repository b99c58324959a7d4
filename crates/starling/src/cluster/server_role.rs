//! `starling server`: serve a share of the model's rows until the coordinator ends the job.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use starling_ps::control::{FromCoordinator, ToCoordinator};
use starling_ps::tcp::{serve, ServeConfig, TcpServerHandle};
use starling_ps::{checkpoint, PsError, Server, TableSpec, Tls};

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
    /// The server id to ask for (a lost server's, a pod's ordinal); any free one when `None`.
    pub slot: Option<usize>,
    /// TLS on every connection (the coordinator's and the workers'), when the job has it.
    pub tls: Option<Tls>,
}

/// Runs a server until the coordinator says the job is over.
pub fn run(opts: &ServerOptions) -> Result<(), ClusterError> {
    let (listener, addr) = listen(opts)?;
    let mut link = CoordLink::connect(&opts.coordinator, &opts.token, &format!("server at {addr}"), opts.tls.as_ref())?;
    let register = ToCoordinator::RegisterServer {
        addr: addr.clone(),
        process: super::this_process(),
        slot: opts.slot,
        returning: false,
    };
    link.send(&register)?;
    let assignment = link.recv()?;
    // A replacement that registered as the job ended: there is nothing left to do.
    if assignment == FromCoordinator::Shutdown {
        return Ok(());
    }
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
        epoch,
    } = assignment
    else {
        let got = assignment.name();
        return Err(ClusterError::Failed(format!(
            "expected this server's assignment from the coordinator, got a {got}"
        )));
    };
    super::write_rank_file(opts.rank_file.as_deref(), id)?;
    let heartbeat = Duration::from_millis(heartbeat_ms.max(10));
    let share = Share {
        id,
        tables,
        owned,
        workers,
        warmup_steps,
        max_frame,
        threads,
        token: opts.token.clone(),
        heartbeat,
        tls: opts.tls.clone(),
    };
    // Heartbeats from now on: loading a large checkpoint must not look like silence.
    link.start_heartbeats(heartbeat, || None);
    let result = (|| {
        let serving = share.serve(listener, addr, resume_from.as_deref(), steps_done, epoch)?;
        serve_until_end(&mut link, &share, serving, opts)
    })();
    if let Err(e) = &result {
        // Best effort: the coordinator names this server's failure instead of only seeing it vanish.
        let _ = link.send(&ToCoordinator::Failed { message: e.to_string() });
    }
    result
}

/// A listener on `--bind`, and the address workers are to dial (`--advertise`, else the bound one).
fn listen(opts: &ServerOptions) -> Result<(TcpListener, String), ClusterError> {
    let listener =
        TcpListener::bind(&opts.bind).map_err(|e| ClusterError::Io(format!("cannot listen on {}", opts.bind), e))?;
    let local = listener.local_addr().map_err(|e| ClusterError::Io("reading the listening address".into(), e))?;
    let addr = opts.advertise.clone().unwrap_or_else(|| local.to_string());
    Ok((listener, addr))
}

/// What the coordinator assigned: enough to serve the share afresh after a rollback.
struct Share {
    id: usize,
    tables: Vec<TableSpec>,
    owned: Vec<u32>,
    workers: usize,
    warmup_steps: u64,
    max_frame: usize,
    threads: usize,
    token: Vec<u8>,
    heartbeat: Duration,
    tls: Option<Tls>,
}

/// The share being served: its rows and the endpoint workers reach them at.
struct Serving {
    server: Arc<Server>,
    endpoint: TcpServerHandle,
    addr: String,
    rows_loaded: u64,
    /// The assignment's or rollback's epoch, echoed to the coordinator.
    epoch: u64,
}

impl Share {
    /// Fresh rows, loaded from `resume_from` when given, served on `listener`; tells the
    /// coordinator it is ready.
    fn serve(
        &self,
        listener: TcpListener,
        addr: String,
        resume_from: Option<&str>,
        steps_done: u64,
        epoch: u64,
    ) -> Result<Serving, ClusterError> {
        let id = self.id;
        let server = Arc::new(Server::new(id, &self.tables, &self.owned));
        server.expect_workers(self.workers, self.warmup_steps, steps_done);
        let mut rows_loaded = 0;
        if let Some(dir) = resume_from {
            let dir = Path::new(dir);
            let manifest = checkpoint::read_manifest(dir)?;
            rows_loaded = checkpoint::load_into(dir, &manifest, &server)?;
            crate::errln!("server {id}: loaded {rows_loaded} rows from {}", dir.display());
        }
        let cfg = ServeConfig {
            token: self.token.clone(),
            max_frame: self.max_frame,
            threads: self.threads,
            tls: self.tls.clone(),
        };
        let endpoint = serve(listener, Arc::clone(&server), cfg)?;
        crate::errln!("server {id}: serving {} virtual shards at {}", self.owned.len(), endpoint.addr());
        Ok(Serving { server, endpoint, addr, rows_loaded, epoch })
    }
}

impl Serving {
    fn ready(&self) -> ToCoordinator {
        ToCoordinator::ServerReady { rows_loaded: self.rows_loaded, addr: self.addr.clone(), epoch: self.epoch }
    }
}

fn serve_until_end(
    link: &mut CoordLink,
    share: &Share,
    mut serving: Serving,
    opts: &ServerOptions,
) -> Result<(), ClusterError> {
    let id = share.id;
    // A failed send to the coordinator shows up at the next receive, where it is handled.
    let _ = link.send(&serving.ready());
    loop {
        match link.recv() {
            Ok(FromCoordinator::WriteCheckpoint { dir }) => {
                // A checkpoint that cannot be written (a full disk) is the coordinator's to
                // judge: the rows being served are unharmed.
                let msg = match checkpoint::write_shard_file(Path::new(&dir), &serving.server) {
                    Ok(info) => ToCoordinator::CheckpointWritten { dir, info },
                    Err(e) => {
                        crate::errln!("server {id}: cannot write its shard file of checkpoint {dir}: {e}");
                        ToCoordinator::CheckpointFailed { dir, message: e.to_string() }
                    }
                };
                let _ = link.send(&msg);
            }
            Ok(FromCoordinator::WorkerGone { rank }) => serving.server.leave(rank),
            Ok(FromCoordinator::Rollback { resume_from, steps_done, epoch }) => {
                // Closing the endpoint drops every connection, so no worker's push reaches the
                // rows after this point and any worker waiting on a round is told at once.
                serving.endpoint.shutdown();
                let from = resume_from.as_deref().unwrap_or("the job's start");
                crate::errln!("server {id}: rolling back to {from}");
                let (listener, addr) = listen(opts)?;
                serving = share.serve(listener, addr, resume_from.as_deref(), steps_done, epoch)?;
                let _ = link.send(&serving.ready());
            }
            Ok(FromCoordinator::Shutdown) => {
                link.send(&ToCoordinator::Load { stats: serving.server.stats() })?;
                serving.endpoint.shutdown();
                crate::errln!("server {id}: job over, {} rows held", serving.server.stats().rows);
                return Ok(());
            }
            Ok(other) => {
                return Err(ClusterError::Failed(format!(
                    "unexpected message from the coordinator: a {}",
                    other.name()
                )))
            }
            Err(PsError::Aborted(reason)) => return Err(ClusterError::Failed(format!("job aborted: {reason}"))),
            Err(e @ PsError::Disconnected { .. }) => {
                // The coordinator died: wait for its replacement, which rolls the job back.
                crate::errln!("server {id}: {e}; waiting for a new coordinator");
                let role = format!("server {id} at {}", serving.addr);
                *link = CoordLink::connect(&opts.coordinator, &opts.token, &role, opts.tls.as_ref())
                    .map_err(|e| ClusterError::Failed(format!("lost the coordinator, and no new one came: {e}")))?;
                let process = super::this_process();
                let addr = serving.addr.clone();
                link.send(&ToCoordinator::RegisterServer { addr, process, slot: Some(id), returning: true })?;
                link.start_heartbeats(share.heartbeat, || None);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
