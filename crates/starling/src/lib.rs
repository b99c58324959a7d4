//! The `starling` binary's library: job config, single-machine trainer, model files, prediction,
//! progress and reports. The numerics live in `starling-core`, the parsing in `starling-data`;
//! this crate only wires them together.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod console;
pub mod http;
pub mod input;
pub mod model;
pub mod model_file;
pub mod predict;
pub mod progress;
pub mod quickstart;
pub mod report;
pub mod serve;
pub mod stream;
pub mod telemetry;
pub mod trainer;
pub mod tune;
pub mod worker;

pub use config::JobConfig;
pub use console::error_chain;
pub use model::Model;
pub use trainer::{train, TrainReport};
