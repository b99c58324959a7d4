//! Starling's numeric core: examples, feature hashing, models (LR, FM, FFM), losses, optimizers,
//! in-memory tables and metrics. Pure computation: no I/O, no threads, no sockets.

pub mod example;
pub mod hash;
pub mod metrics;
pub mod rng;

pub use example::{Example, ExampleBuf, Feature};
