//! Files that are either complete under their final name or absent, with a running CRC32: what
//! checkpoints and single-machine model files are written with. They live in `starling-fs`, which
//! the input side shares; this module keeps the old paths working.

pub use starling_fs::{sync_dir, temp_name, write_atomic_io, AtomicFile, Crc};
