//! The tables a server holds are the model's own declarations (`starling_core::model::spec`).

pub use starling_core::model::{dense_chunks, Init, TableKind, TableSpec};
