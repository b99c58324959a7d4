//! Starling's numeric core: examples, feature hashing, models (LR, FM, FFM, graphs of neural
//! blocks), layers, losses, optimizers, in-memory tables and metrics. Pure computation: no I/O, no threads, no sockets.

pub mod error;
pub mod example;
pub mod graph;
pub mod hash;
pub mod hot;
pub mod learner;
pub mod loss;
pub mod metrics;
pub mod minibatch;
pub mod model;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod rowmap;
pub mod table;

pub use error::ModelError;
pub use example::{Example, ExampleBuf, Feature};
pub use hot::HotRows;
pub use learner::{LearnScratch, Learner};
pub use loss::Loss;
pub use minibatch::{compact_touched, BatchScratch, MiniBatch};
pub use model::{Gradients, Init, Model, ModelKind, ModelSpec, Scratch, ShallowKind, TableKind, TableSpec};
pub use optim::Optimizer;
pub use rowmap::RowMap;
pub use table::{DenseTable, HashTable, RowInit, Table};
