//! Coordinator traffic: registration, clocks, heartbeats, checkpoints and end of job, as
//! JSON bodies (self-describing, so tagged enums such as the optimizer travel as they are) of [`Kind::Control`](crate::frame::Kind::Control) frames.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::checkpoint::ShardFileInfo;
use crate::client::ClientStats;
use crate::frame::{self, FrameError, Kind, ReadError};
use crate::server::StatsSnapshot;
use crate::shard::ShardMap;
use crate::table::TableSpec;

/// Bound on control frames: they carry a job config and a shard map, never model rows.
pub const MAX_CONTROL_FRAME: usize = 16 << 20;

/// Messages to the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToCoordinator {
    /// A server listening for workers at `addr`.
    RegisterServer {
        /// Address workers connect to.
        addr: String,
        /// Who it is, so a silent one can be fenced.
        process: ProcessId,
        /// The server id it asks for: the one it served before (`returning`), or a lost one's.
        slot: Option<usize>,
        /// It served `slot` under a coordinator that died: it rolls back instead of starting.
        returning: bool,
    },
    /// The server has loaded its rows and serves them at `addr` (new after a rollback).
    ServerReady {
        /// Rows loaded from a checkpoint.
        rows_loaded: u64,
        /// Address workers connect to.
        addr: String,
        /// The epoch of the assignment or rollback this answers.
        epoch: u64,
    },
    /// A worker asking for its rank.
    RegisterWorker {
        /// Who it is, for logs and fencing.
        process: ProcessId,
        /// The rank it asks for: the one it had before (`returning`), or a lost one's.
        slot: Option<usize>,
        /// It trained as `slot` under a coordinator that died: it rewinds instead of starting.
        returning: bool,
    },
    /// A worker's step failed on a server (it closed or refused); the worker waits for the
    /// coordinator's [`FromCoordinator::Rewind`] or the end of the job.
    Stalled {
        /// What failed.
        reason: String,
    },
    /// Still alive; workers add their running totals for the job's progress view.
    Heartbeat {
        /// A worker's progress so far; `None` from servers.
        progress: Option<WorkerProgress>,
    },
    /// The worker finished step `clock - 1`; answered by [`FromCoordinator::Go`] once step `clock` may start.
    Clock {
        /// The worker's new clock.
        clock: u64,
    },
    /// The worker has no more data; answered by [`FromCoordinator::AllDone`] once every worker is done.
    Done {
        /// Its final clock.
        clock: u64,
        /// Its final progress.
        progress: WorkerProgress,
        /// Progressive metrics of its last pass: examples and summed loss.
        last_pass: (u64, f64),
    },
    /// Rank 0's holdout metrics.
    Evaluated {
        /// Metrics, when the job has test data.
        test: Option<TestMetrics>,
    },
    /// A server wrote its shard file of the requested checkpoint.
    CheckpointWritten {
        /// The checkpoint directory it was asked to write into.
        dir: String,
        /// What it wrote.
        info: ShardFileInfo,
    },
    /// A server could not write its shard file of the requested checkpoint.
    CheckpointFailed {
        /// The checkpoint directory it was asked to write into.
        dir: String,
        /// Why (a full disk, say).
        message: String,
    },
    /// A server's load, sent with its last checkpoint.
    Load {
        /// Traffic served.
        stats: StatsSnapshot,
    },
    /// The sender hit an error it cannot recover from.
    Failed {
        /// What happened.
        message: String,
    },
    /// An elastic job's worker finished its piece of the input (if it had one) and asks for the
    /// next; answered by [`FromCoordinator::Piece`].
    NextPiece,
    /// An elastic job's worker leaves: the rest of its piece goes back to the others.
    Leave {
        /// Its final progress.
        progress: WorkerProgress,
        /// It finished the piece it held: nothing of it goes back.
        finished: bool,
    },
}

impl ToCoordinator {
    /// The message's name, for errors about an unexpected one (its fields may be large).
    pub fn name(&self) -> &'static str {
        match self {
            ToCoordinator::RegisterServer { .. } => "server registration",
            ToCoordinator::ServerReady { .. } => "server-ready message",
            ToCoordinator::RegisterWorker { .. } => "worker registration",
            ToCoordinator::Stalled { .. } => "stalled-worker message",
            ToCoordinator::Heartbeat { .. } => "heartbeat",
            ToCoordinator::Clock { .. } => "clock message",
            ToCoordinator::Done { .. } => "end-of-training message",
            ToCoordinator::Evaluated { .. } => "holdout metrics",
            ToCoordinator::CheckpointWritten { .. } => "checkpoint-written message",
            ToCoordinator::CheckpointFailed { .. } => "checkpoint-failed message",
            ToCoordinator::Load { .. } => "load report",
            ToCoordinator::Failed { .. } => "failure report",
            ToCoordinator::NextPiece => "request for a piece of the input",
            ToCoordinator::Leave { .. } => "leave notice",
        }
    }
}

/// A process as the coordinator names and, when it shares the coordinator's host, fences it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pid {}", self.host, self.pid)
    }
}

/// A worker's running totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerProgress {
    /// Examples learned so far.
    pub examples: u64,
    /// Their summed loss.
    pub loss_sum: f64,
    /// Traffic, waits and staleness.
    pub stats: ClientStats,
}

/// Holdout metrics as they travel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    /// Examples scored.
    pub count: u64,
    /// Mean log loss.
    pub logloss: f64,
    /// Area under the ROC curve.
    pub auc: Option<f64>,
    /// Accuracy at 0.5.
    pub accuracy: f64,
    /// Root mean squared error.
    pub rmse: f64,
}

/// A piece of an elastic job's training input: slice `index` of `of` (split as `of` workers
/// would split the input) in pass `pass`, its first `skip` steps already in the servers' rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Piece {
    /// The pass (from 1) it belongs to.
    pub pass: u32,
    /// Which slice.
    pub index: usize,
    /// Slices the input is cut into.
    pub of: usize,
    /// Steps of it already trained on (by a worker that left or was lost midway).
    pub skip: u64,
}

impl std::fmt::Display for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "piece {} of {} (pass {})", self.index, self.of, self.pass)?;
        if self.skip > 0 {
            write!(f, " from step {}", self.skip)?;
        }
        Ok(())
    }
}

/// Messages from the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromCoordinator {
    /// A server's share: its id, the tables, the virtual shards it owns, and a checkpoint to load.
    ServerAssignment {
        /// Server index.
        id: usize,
        /// The job's tables.
        tables: Vec<TableSpec>,
        /// Virtual shards it owns.
        owned: Vec<u32>,
        /// Checkpoint directory to load its rows from.
        resume_from: Option<String>,
        /// Largest request frame accepted, in bytes.
        max_frame: usize,
        /// Network threads.
        threads: usize,
        /// Heartbeat period in milliseconds.
        heartbeat_ms: u64,
        /// Workers of the job: each round of a synchronous table waits for every live one.
        workers: usize,
        /// Steps over which every table's step size rises to its own (0: none).
        warmup_steps: u64,
        /// Steps of the slowest worker already done (a resumed job).
        steps_done: u64,
        /// Which rollback of the job this share serves (0 before any): echoed by `ServerReady`.
        epoch: u64,
    },
    /// A worker's share.
    WorkerAssignment {
        /// Its rank.
        rank: usize,
        /// Number of workers.
        world: usize,
        /// The job config as TOML, features resolved.
        job: String,
        /// Server addresses, by server index.
        servers: Vec<String>,
        /// Virtual shard owners.
        map: ShardMap,
        /// The job's tables.
        tables: Vec<TableSpec>,
        /// Steps it already did in the checkpoint being resumed (0 for a fresh job).
        start_clock: u64,
    },
    /// The requested step may start.
    Go {
        /// Steps the slowest active worker is behind.
        staleness: u64,
    },
    /// Every worker is done; `evaluate` picks the one worker that scores the holdout.
    AllDone {
        /// This worker scores the holdout (the lowest surviving rank).
        evaluate: bool,
    },
    /// Worker `rank` is done or lost: synchronous rounds stop waiting for it.
    WorkerGone {
        /// Its rank.
        rank: usize,
    },
    /// A process was lost: drop every row and serve afresh from `resume_from` (the job's start
    /// when `None`), answering [`ToCoordinator::ServerReady`] with the new address.
    Rollback {
        /// Checkpoint directory to load the rows from.
        resume_from: Option<String>,
        /// Steps of the slowest worker at that cut.
        steps_done: u64,
        /// Which rollback this is: echoed by `ServerReady`, so a late answer to an earlier one is
        /// told apart.
        epoch: u64,
    },
    /// The job rolled back: reconnect to `servers` and go on from step `clock`.
    Rewind {
        /// The worker's clock at the cut.
        clock: u64,
        /// Server addresses, by server index.
        servers: Vec<String>,
    },
    /// Write this server's shard file into `dir`.
    WriteCheckpoint {
        /// Checkpoint directory.
        dir: String,
    },
    /// An elastic job's next piece of input for the asking worker, its clock set to `clock`;
    /// `None` when no input is left to train on.
    Piece {
        /// The piece.
        piece: Option<Piece>,
        /// The worker's clock from now on (never behind the slowest active worker).
        clock: u64,
    },
    /// An elastic job's worker waiting for a piece (or for the end) is still waited for: a
    /// chance to notice that it was asked to leave.
    StillWaiting,
    /// The job is over: exit cleanly.
    Shutdown,
    /// The job failed: exit with this reason.
    Abort {
        /// Why.
        reason: String,
    },
}

impl FromCoordinator {
    /// The message's name, for errors about an unexpected one (an assignment holds the whole job).
    pub fn name(&self) -> &'static str {
        match self {
            FromCoordinator::ServerAssignment { .. } => "server assignment",
            FromCoordinator::WorkerAssignment { .. } => "worker assignment",
            FromCoordinator::Go { .. } => "go-ahead",
            FromCoordinator::AllDone { .. } => "end-of-job message",
            FromCoordinator::WorkerGone { .. } => "worker-gone notice",
            FromCoordinator::Rollback { .. } => "rollback",
            FromCoordinator::Rewind { .. } => "rewind",
            FromCoordinator::WriteCheckpoint { .. } => "checkpoint request",
            FromCoordinator::Piece { .. } => "piece of the input",
            FromCoordinator::StillWaiting => "still-waiting notice",
            FromCoordinator::Shutdown => "shutdown",
            FromCoordinator::Abort { .. } => "abort",
        }
    }
}

/// Encodes a control message as a whole frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("control messages always serialise");
    let mut out = Vec::with_capacity(body.len() + frame::HEADER_LEN);
    frame::write_frame(&mut out, Kind::Control, 0, 0, &body);
    out
}

/// Writes a control message.
pub fn send<W: Write, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    w.write_all(&encode(msg))?;
    w.flush()
}

/// Reads the next control message (an Error frame becomes a [`FrameError::Control`] with its text).
pub fn recv<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R, buf: &mut Vec<u8>) -> Result<T, ReadError> {
    let h = frame::read_frame(r, MAX_CONTROL_FRAME, buf)?;
    match h.kind {
        Kind::Control => serde_json::from_slice(buf).map_err(|e| FrameError::Control(e.to_string()).into()),
        Kind::Error => Err(FrameError::Control(frame::decode_text(buf)).into()),
        got => Err(FrameError::Unexpected { got, expected: "a control message" }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            ToCoordinator::Clock { clock: 7 },
            ToCoordinator::RegisterServer {
                addr: "127.0.0.1:9".into(),
                process: ProcessId { host: "h".into(), pid: 7 },
                slot: None,
                returning: false,
            },
            ToCoordinator::Failed { message: "disk full".into() },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            send(&mut wire, m).unwrap();
        }
        let mut r = &wire[..];
        let mut buf = Vec::new();
        for m in &msgs {
            let got: ToCoordinator = recv(&mut r, &mut buf).unwrap();
            assert_eq!(&got, m);
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut wire = Vec::new();
        frame::write_frame(&mut wire, Kind::Control, 0, 0, b"{nope");
        let err = recv::<_, FromCoordinator>(&mut &wire[..], &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("malformed control message"), "{err}");
    }
}
