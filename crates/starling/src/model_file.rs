//! Model files: a versioned header, the job config, every table's rows, and a CRC32 over all of it.
//!
//! Layout (little-endian):
//! ```text
//! "STARLING" | format version u32 | header length u32 | header (TOML) |
//! for each table: rows × (key u64, row_len × f32) | crc32 of everything before it (u32)
//! ```
//! The header says how many rows of how many floats each table has, so a truncated file is
//! caught before any row is read, and the checksum catches any flipped byte. A file is written
//! under a temporary name, synced and renamed, so a crash or a full disk never leaves a
//! half-written model under the final name. Version 1 files (one table, a shallow model) load.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::graph::Fields;
use starling_core::model::ShallowModel;
use starling_core::{Learner, Loss, ModelSpec, Optimizer, TableKind, TableSpec};
use starling_ps::checkpoint::durable::{write_atomic_io, Crc};

use crate::config::JobConfig;
use crate::model::{Model, ModelTable, Net};

const MAGIC: &[u8; 8] = b"STARLING";
/// Current format version; readers refuse newer ones. Version 2 holds any number of tables.
pub const FORMAT_VERSION: u32 = 2;
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

/// One table as the header records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TableHeader {
    name: String,
    row_len: usize,
    rows: u64,
}

/// What a version 2 header records besides the rows.
#[derive(Serialize, Deserialize)]
struct Header {
    passes_done: u32,
    examples_seen: u64,
    /// The input's field names by id, which a graph is built over.
    fields: Vec<String>,
    bias_field: Option<u32>,
    tables: Vec<TableHeader>,
    job: JobConfig,
}

/// A version 1 header: one shallow model's table.
#[derive(Deserialize)]
struct HeaderV1 {
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
    let header = Header {
        passes_done: model.passes_done,
        examples_seen: model.examples_seen,
        fields: model.fields.names.clone(),
        bias_field: model.fields.bias,
        tables: model
            .net
            .tables()
            .iter()
            .zip(&model.tables)
            .map(|(s, t)| TableHeader {
                name: s.name.clone(),
                row_len: t.as_dyn().row_len(),
                rows: t.as_dyn().len() as u64,
            })
            .collect(),
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
        for (th, table) in header.tables.iter().zip(&model.tables) {
            let mut written = 0u64;
            let mut err = None;
            table.as_dyn().for_each_row(&mut |key, row| {
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
            if written != th.rows {
                return Err(std::io::Error::other(format!(
                    "table {} changed while saving ({} rows announced, {written} written)",
                    th.name, th.rows
                )));
            }
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

/// Whether `path` names a directory: a local one, or an object store URL, where only
/// checkpoints are written.
fn is_dir(path: &Path) -> bool {
    path.is_dir() || starling_fs::remote::is_url_path(path)
}

/// The model a path names: a model file, a checkpoint directory, or a directory of checkpoints
/// (`checkpoint.dir`), which means its newest complete checkpoint.
pub fn resolve(path: &Path) -> Result<PathBuf, ModelFileError> {
    if !is_dir(path) {
        return Ok(path.to_path_buf());
    }
    let invalid = |message: String| ModelFileError::Invalid { path: path.to_path_buf(), message };
    let skip = &mut |dir: &Path, e: &starling_ps::PsError| {
        crate::errln!("passing over checkpoint {} for an older one: {e}", dir.display())
    };
    match starling_ps::checkpoint::latest(path, skip).map_err(|e| invalid(e.to_string()))? {
        Some((dir, _)) => Ok(dir),
        None => Err(invalid(
            "is a directory with neither a checkpoint (manifest.toml) nor complete step-N checkpoints in it".into(),
        )),
    }
}

/// Loads a model saved by [`save`], refusing damaged, truncated or foreign files; a directory is
/// read as [`resolve`] says.
pub fn load(path: &Path) -> Result<Model, ModelFileError> {
    if is_dir(path) {
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
    let (model, tables) = if version == 1 {
        let h: HeaderV1 = toml::from_str(&text).map_err(|e| invalid(format!("header does not parse: {e}")))?;
        let learner = Learner::new(h.spec.clone(), h.optimizer, h.loss)
            .map_err(|e| invalid(format!("header describes an invalid model: {e}")))?;
        let net = Net::Shallow(ShallowModel::new(learner));
        let fields = Fields { names: (0..h.spec.num_fields).map(|f| f.to_string()).collect(), bias: None };
        let tables = vec![TableHeader { name: net.tables()[0].name.clone(), row_len: h.row_len, rows: h.rows }];
        let t = ModelTable::new(&net.tables()[0], h.job.features.hash_bits).map_err(|e| invalid(e.to_string()))?;
        let model = Model {
            job: h.job,
            fields,
            net,
            tables: vec![t],
            passes_done: h.passes_done,
            examples_seen: h.examples_seen,
        };
        (model, tables)
    } else {
        let h: Header = toml::from_str(&text).map_err(|e| invalid(format!("header does not parse: {e}")))?;
        let fields = Fields { names: h.fields, bias: h.bias_field };
        let mut model = Model::new(&h.job, fields)
            .map_err(|e| invalid(format!("header describes a model that cannot be built: {e}")))?;
        (model.passes_done, model.examples_seen) = (h.passes_done, h.examples_seen);
        (model, h.tables)
    };
    let specs = model.net.tables();
    check_tables(tables.iter().map(|t| (t.name.as_str(), t.row_len)), specs).map_err(invalid)?;
    let expected = 16
        + u64::from(header_len)
        + tables.iter().map(|t| t.rows.saturating_mul(8 + 4 * t.row_len as u64)).fold(0u64, u64::saturating_add)
        + 4;
    if file_len != expected {
        let rows: Vec<String> = tables.iter().map(|t| format!("{} rows of {} floats", t.rows, t.row_len)).collect();
        return Err(invalid(format!(
            "{} model file: {file_len} bytes, but its header announces {} ({expected} bytes)",
            if file_len < expected { "truncated" } else { "oversized" },
            rows.join(", ")
        )));
    }
    let bits = model.job.features.hash_bits;
    for (th, (spec, table)) in tables.iter().zip(specs.iter().zip(&model.tables)) {
        let t = table.as_dyn();
        let mut buf = vec![0u8; 8 + 4 * th.row_len];
        let mut row = vec![0f32; th.row_len];
        let limit = match spec.kind {
            TableKind::Sparse if bits > 0 => 1u64 << bits,
            TableKind::Sparse => u64::MAX,
            TableKind::Dense { .. } => spec.dense_keys().len() as u64,
        };
        for i in 0..th.rows {
            r.read_exact(&mut buf).map_err(io)?;
            let key = u64::from_le_bytes(buf[..8].try_into().unwrap());
            if limit != u64::MAX && key >= limit {
                return Err(invalid(format!(
                    "row {i} of table `{}` has key {key:#x} outside the table: the file is corrupt",
                    th.name
                )));
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
    Ok(model)
}

/// Checks that the stored tables, as (name, floats per row), are the ones the model declares.
fn check_tables<'a>(
    stored: impl ExactSizeIterator<Item = (&'a str, usize)>,
    specs: &[TableSpec],
) -> Result<(), String> {
    if stored.len() != specs.len() {
        return Err(format!("holds {} tables but its model declares {}", stored.len(), specs.len()));
    }
    for ((name, row_len), s) in stored.zip(specs) {
        if name != s.name || row_len != s.row_len() {
            return Err(format!(
                "table `{name}` has rows of {row_len} floats, but its model declares table `{}` with rows of {}",
                s.name,
                s.row_len()
            ));
        }
    }
    Ok(())
}

/// Loads a distributed checkpoint (a directory with a manifest and one shard file per server) as a
/// single-machine model: every server's rows in one in-memory table per table.
fn load_checkpoint(dir: &Path) -> Result<Model, ModelFileError> {
    let invalid = |message: String| ModelFileError::Invalid { path: dir.to_path_buf(), message };
    let manifest = starling_ps::read_manifest(dir).map_err(|e| invalid(e.to_string()))?;
    let job = crate::config::JobConfig::from_toml(&manifest.job, "the checkpoint's job")
        .map_err(|e| invalid(e.to_string()))?;
    let fields = if manifest.fields.is_empty() {
        // Version 1 manifests held shallow models only, sized by their field count.
        let n = match manifest.tables.first().map(|t| &t.init) {
            Some(starling_ps::Init::Model(spec)) => spec.num_fields,
            _ => 0,
        };
        Fields { names: (0..n).map(|f| f.to_string()).collect(), bias: None }
    } else {
        Fields { names: manifest.fields.clone(), bias: manifest.bias_field }
    };
    let mut model = Model::new(&job, fields).map_err(|e| invalid(e.to_string()))?;
    let specs = model.net.tables();
    check_tables(manifest.tables.iter().map(|t| (t.name.as_str(), t.row_len())), specs).map_err(invalid)?;
    let tables = &model.tables;
    starling_ps::load_rows(dir, &manifest, &mut |table_id, key, row| {
        if let Some(t) = tables.get(table_id as usize) {
            t.as_dyn().write(key, row);
        }
    })
    .map_err(|e| invalid(e.to_string()))?;
    (model.passes_done, model.examples_seen) = (manifest.passes_done, manifest.examples_seen);
    Ok(model)
}
