//! Errors of the parameter server, its transports and checkpoints.

use std::path::PathBuf;

/// Anything that can go wrong between a worker and the servers.
#[derive(Debug, thiserror::Error)]
pub enum PsError {
    /// A table id the server does not have.
    #[error("unknown table {table} (the job has {tables})")]
    UnknownTable {
        /// Requested id.
        table: u32,
        /// Tables in the job.
        tables: usize,
    },
    /// Keys of a request must be strictly increasing (sorted, no repeats).
    #[error("keys must be sorted and unique: key #{index} ({key}) does not follow {prev}")]
    UnsortedKeys {
        /// Position of the offending key.
        index: usize,
        /// The offending key.
        key: u64,
        /// The key before it.
        prev: u64,
    },
    /// A key sent to a server that does not own its virtual shard.
    #[error("key {key} (virtual shard {vshard}) is not owned by server {server}")]
    NotOwner {
        /// The key.
        key: u64,
        /// Its virtual shard.
        vshard: u32,
        /// The server that got it.
        server: usize,
    },
    /// Value array length does not match keys × dim.
    #[error("{values} values for {keys} keys of dim {dim}: expected {}", keys * dim)]
    LengthMismatch {
        /// Keys in the request.
        keys: usize,
        /// Values in the request.
        values: usize,
        /// Row width of the table.
        dim: usize,
    },
    /// A malformed or refused frame.
    #[error("{0}")]
    Frame(#[from] crate::frame::FrameError),
    /// The peer answered with an error.
    #[error("{peer} refused the request: {message}")]
    Remote {
        /// Who answered.
        peer: String,
        /// Its message.
        message: String,
    },
    /// A connection failed or closed.
    #[error("lost {peer}: {source}")]
    Disconnected {
        /// Who was lost.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// Calls made out of order (a caller's bug, e.g. a push while a pull is in flight).
    #[error("client misuse: {0}")]
    Protocol(String),
    /// The job was stopped, by the coordinator or a failure elsewhere.
    #[error("job aborted: {0}")]
    Aborted(String),
    /// A process of the job was lost and every table went back to the last checkpoint's cut:
    /// the caller's work since then is void, and it goes on from `clock`.
    #[error("the job rolled back to step {clock}")]
    RolledBack {
        /// The caller's clock at the cut.
        clock: u64,
    },
    /// A TLS certificate, key or CA file that cannot be used.
    #[error("TLS file {path}: {message}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Checkpoint trouble.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// File or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Local I/O (sockets, files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl PsError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PsError::Io { context: context.into(), source }
    }
}
