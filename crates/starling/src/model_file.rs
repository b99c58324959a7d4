//! Model files: a versioned header, the job config, every row, and a CRC32 over all of it.
//!
//! Layout (little-endian):
//! ```text
//! "STARLING" | format version u32 | header length u32 | header (TOML) |
//! rows × (key u64, row_len × f32) | crc32 of everything before it (u32)
//! ```
//! The header says how many rows follow, so a truncated file is caught before any row is read, and
//! the checksum catches any flipped byte. A file is written under a temporary name, synced and
//! renamed, so a crash or a full disk never leaves a half-written model under the final name.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::{Learner, Loss, ModelSpec, Optimizer};
use starling_ps::checkpoint::durable::{write_atomic_io, Crc};

use crate::config::JobConfig;
use crate::model::{Model, ModelTable};

const MAGIC: &[u8; 8] = b"STARLING";
/// Current format version; readers refuse newer ones.
pub const FORMAT_VERSION: u32 = 1;
/// Headers beyond this are corruption, not configs.
const MAX_HEADER: u32 = 16 << 20;

/// Errors saving or loading a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// An I/O error, with the file it happened on.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not a Starling model, is damaged, or is from a newer version.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What the header records besides the rows.
#[derive(Serialize, Deserialize)]
struct Header {
    spec: ModelSpec,
    optimizer: Optimizer,
    loss: Loss,
    row_len: usize,
    rows: u64,
    passes_done: u32,
    examples_seen: u64,
    job: JobConfig,
}

/// Saves `model` to `path` atomically (temporary file, fsync, rename, directory fsync).
pub fn save(model: &Model, path: &Path) -> Result<(), ModelFileError> {
    let io = |source| ModelFileError::Io { path: path.to_path_buf(), source };
    let table = model.table.as_dyn();
    let header = Header {
        spec: model.learner.model.clone(),
        optimizer: model.learner.optimizer,
        loss: model.learner.loss,
        row_len: table.row_len(),
        rows: table.len() as u64,
        passes_done: model.passes_done,
        examples_seen: model.examples_seen,
        job: model.job.clone(),
    };
    let header_text = toml::to_string(&header).expect("a model header always serialises");
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| ModelFileError::Invalid {
        path: path.to_path_buf(),
        message: "a model path must name a file".into(),
    })?;
    write_atomic_io(dir, &name.to_string_lossy(), &mut |out| {
        let mut w = Crc::new(&mut *out);
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&(header_text.len() as u32).to_le_bytes())?;
        w.write_all(header_text.as_bytes())?;
        let mut written = 0u64;
        let mut err = None;
        table.for_each_row(&mut |key, row| {
            if err.is_some() {
                return;
            }
            let r = (|| {
                w.write_all(&key.to_le_bytes())?;
                for x in row {
                    w.write_all(&x.to_le_bytes())?;
                }
                Ok(())
            })();
            written += 1;
            err = r.err();
        });
        if let Some(e) = err {
            return Err(e);
        }
        if written != header.rows {
            return Err(std::io::Error::other(format!(
                "table changed while saving ({} rows announced, {written} written)",
                header.rows
            )));
        }
        let crc = w.crc();
        out.write_all(&crc.to_le_bytes())
    })
    .map(|_| ())
    .map_err(io)
}

/// Checks, before any training, that [`save`] will be able to write `path` (its directory is
/// created, as `launch` does).
pub fn check_writable(path: &Path) -> Result<(), ModelFileError> {
    starling_fs::check_writable(path).map_err(|source| ModelFileError::Io { path: path.to_path_buf(), source })
}

/// The model a path names: a model file, a checkpoint directory, or a directory of checkpoints
/// (`checkpoint.dir`), which means its newest complete checkpoint.
pub fn resolve(path: &Path) -> Result<PathBuf, ModelFileError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let invalid = |message: String| ModelFileError::Invalid { path: path.to_path_buf(), message };
    match starling_ps::checkpoint::latest(path).map_err(|e| invalid(e.to_string()))? {
        Some((dir, _)) => Ok(dir),
        None => Err(invalid(
            "is a directory with neither a checkpoint (manifest.toml) nor complete step-N checkpoints in it".into(),
        )),
    }
}

/// Loads a model saved by [`save`], refusing damaged, truncated or foreign files; a directory is
/// read as [`resolve`] says.
pub fn load(path: &Path) -> Result<Model, ModelFileError> {
    if path.is_dir() {
        return load_checkpoint(&resolve(path)?);
    }
    let io = |source| ModelFileError::Io { path: path.to_path_buf(), source };
    let invalid = |message: String| ModelFileError::Invalid { path: path.to_path_buf(), message };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut r = Crc::new(BufReader::with_capacity(1 << 20, file));
    let truncated = |what: &str| invalid(format!("truncated model file: it ends inside the {what}"));
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(invalid("not a Starling model file (bad magic number)".into()));
    }
    let mut u32buf = [0u8; 4];
    r.read_exact(&mut u32buf).map_err(|_| truncated("version"))?;
    let version = u32::from_le_bytes(u32buf);
    if version == 0 || version > FORMAT_VERSION {
        return Err(invalid(format!(
            "model format version {version}; this build of Starling reads versions 1 to {FORMAT_VERSION}"
        )));
    }
    r.read_exact(&mut u32buf).map_err(|_| truncated("header length"))?;
    let header_len = u32::from_le_bytes(u32buf);
    if header_len > MAX_HEADER || u64::from(header_len) > file_len {
        return Err(invalid(format!("header length {header_len} is impossible: the file is corrupt")));
    }
    let mut text = vec![0u8; header_len as usize];
    r.read_exact(&mut text).map_err(|_| truncated("header"))?;
    let text = String::from_utf8(text).map_err(|_| invalid("header is not UTF-8: the file is corrupt".into()))?;
    let header: Header = toml::from_str(&text).map_err(|e| invalid(format!("header does not parse: {e}")))?;
    let row_bytes = 8 + 4 * header.row_len as u64;
    let expected = 16 + u64::from(header_len) + header.rows.saturating_mul(row_bytes) + 4;
    if file_len != expected {
        return Err(invalid(format!(
            "{} model file: {file_len} bytes, but its header announces {} rows of {} floats ({expected} bytes)",
            if file_len < expected { "truncated" } else { "oversized" },
            header.rows,
            header.row_len
        )));
    }
    let learner = Learner::new(header.spec.clone(), header.optimizer, header.loss)
        .map_err(|e| invalid(format!("header describes an invalid model: {e}")))?;
    if learner.row_len() != header.row_len {
        return Err(invalid(format!(
            "header says rows of {} floats but the model needs {}",
            header.row_len,
            learner.row_len()
        )));
    }
    let table = ModelTable::new(&learner, header.job.features.hash_bits).map_err(|e| invalid(e.to_string()))?;
    {
        let t = table.as_dyn();
        let mut buf = vec![0u8; row_bytes as usize];
        let mut row = vec![0f32; header.row_len];
        let mask =
            if header.job.features.hash_bits == 0 { u64::MAX } else { (1u64 << header.job.features.hash_bits) - 1 };
        for i in 0..header.rows {
            r.read_exact(&mut buf).map_err(io)?;
            let key = u64::from_le_bytes(buf[..8].try_into().unwrap());
            if key & !mask != 0 {
                return Err(invalid(format!("row {i} has key {key:#x} outside the table: the file is corrupt")));
            }
            for (x, b) in row.iter_mut().zip(buf[8..].chunks_exact(4)) {
                *x = f32::from_le_bytes(b.try_into().unwrap());
            }
            t.write(key, &row);
        }
    }
    let computed = r.hasher.clone().finalize();
    r.inner.read_exact(&mut u32buf).map_err(|_| truncated("checksum"))?;
    if u32::from_le_bytes(u32buf) != computed {
        return Err(invalid("checksum mismatch: the file is corrupt".into()));
    }
    Ok(Model { job: header.job, learner, table, passes_done: header.passes_done, examples_seen: header.examples_seen })
}

/// Loads a distributed checkpoint (a directory with a manifest and one shard file per server) as a
/// single-machine model: every server's rows in one in-memory table.
fn load_checkpoint(dir: &Path) -> Result<Model, ModelFileError> {
    let invalid = |message: String| ModelFileError::Invalid { path: dir.to_path_buf(), message };
    let manifest = starling_ps::read_manifest(dir).map_err(|e| invalid(e.to_string()))?;
    let job = crate::config::JobConfig::from_toml(&manifest.job, "the checkpoint's job")
        .map_err(|e| invalid(e.to_string()))?;
    let Some(spec) = manifest.tables.first() else { return Err(invalid("the checkpoint has no tables".into())) };
    let starling_ps::Init::Model(model_spec) = &spec.init else {
        return Err(invalid(format!("table `{}` is not a model's sparse table", spec.name)));
    };
    let learner = starling_core::Learner::new(model_spec.clone(), spec.optimizer, job.model.loss)
        .map_err(|e| invalid(e.to_string()))?;
    let table = crate::model::ModelTable::new(&learner, job.features.hash_bits).map_err(|e| invalid(e.to_string()))?;
    let t = table.as_dyn();
    if t.row_len() != spec.row_len() {
        return Err(invalid(format!("rows of {} floats, the model needs {}", spec.row_len(), t.row_len())));
    }
    starling_ps::load_rows(dir, &manifest, &mut |table_id, key, row| {
        if table_id == 0 {
            t.write(key, row);
        }
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok(Model { job, learner, table, passes_done: manifest.passes_done, examples_seen: manifest.examples_seen })
}
