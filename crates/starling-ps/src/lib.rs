//! Starling's parameter server: tables sharded into virtual shards, servers that apply the
//! optimizer to pushed gradients, worker clocks with the BSP/SSP/ASP staleness rule, one client
//! interface over two transports (in-process calls and TCP frames), and checkpoints.

pub mod checkpoint;
pub mod client;
pub mod clock;
pub mod control;
pub mod error;
pub mod frame;
pub mod server;
pub mod shard;
pub mod store;
mod sync;
pub mod table;
pub mod tcp;
pub mod tls;

pub use checkpoint::{
    create_step_dir, latest, load_into, load_rows, prune, read_manifest, step_dir, write_manifest, write_shard_file,
    Manifest, ShardFileInfo,
};
pub use client::{ClientStats, LocalClient, LocalCluster, ParamClient};
pub use clock::{ClockTable, LocalClocks, Staleness, StalenessHistogram, Wait, WorkerState};
pub use error::PsError;
pub use server::{Server, StatsSnapshot};
pub use shard::{vshard_of, ShardMap, Split, NUM_VSHARDS};
pub use store::Store;
pub use sync::Ticket;
pub use table::{Init, TableKind, TableSpec};
pub use tcp::{serve, ClientOptions, ServeConfig, TcpClient, TcpServerHandle};
pub use tls::{Tls, TlsFiles};
