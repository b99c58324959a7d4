//! Starling's parameter server: tables sharded into virtual shards, servers that apply the
//! optimizer to pushed gradients, worker clocks with the BSP/SSP/ASP staleness rule, one client
//! interface over two transports (in-process calls and TCP frames), and checkpoints.

pub mod client;
pub mod clock;
pub mod error;
pub mod frame;
pub mod server;
pub mod shard;
pub mod store;
pub mod table;

pub use client::{ClientStats, LocalClient, LocalCluster, ParamClient};
pub use clock::{ClockTable, LocalClocks, Staleness, StalenessHistogram, Wait, WorkerState};
pub use error::PsError;
pub use server::{Server, StatsSnapshot};
pub use shard::{vshard_of, ShardMap, Split, NUM_VSHARDS};
pub use store::Store;
pub use table::{Init, TableSpec};
