//! Checkpoints (design.md, decision 8): a directory with one shard file per server and a
//! `manifest.toml` written last.
//!
//! Every file is written under a temporary name in the same directory, fsynced, renamed, and the
//! directory fsynced, so a crash leaves either the complete file under its final name or nothing.
//! The coordinator writes the manifest only after every server has reported its file: no
//! manifest, no checkpoint. Readers check each shard file's size and CRC32 against the manifest.
//!
//! Loading reads every file twice: a first pass checks structure and checksum without touching
//! any table, a second applies the rows. A damaged file is therefore refused before a single row
//! lands, at the cost of reading the data twice (sequentially; the second read usually comes from
//! the page cache). Loading into a different number of servers works because rows are grouped by
//! virtual shard and each server keeps only the virtual shards it owns.
//!
//! A checkpoint directory may also be an object store URL (`s3://bucket/ck`): files are written
//! and checked locally as ever, then uploaded, the manifest last; see [`place`].

pub mod durable;
mod manifest;
mod place;
mod shard_file;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};

use durable::sync_dir;
#[cfg(test)]
use durable::temp_name;
pub use manifest::{read_manifest, write_manifest, Manifest, MANIFEST_FILE, MANIFEST_VERSION};
use place::{open_dir, Place};
pub use shard_file::{shard_file_name, write_shard_file, ShardFileInfo, SHARD_FORMAT_VERSION};
use starling_fs::remote::is_url_path;

use crate::error::PsError;
use crate::server::Server;
use crate::table::TableSpec;
use starling_core::Table;

/// A checkpoint format error about `path`.
fn invalid(path: &Path, message: String) -> PsError {
    PsError::Checkpoint { path: path.to_path_buf(), message }
}

/// Writes `dir/name` atomically; on failure names the file (see [`durable::write_atomic_io`]).
fn write_atomic(
    dir: &Path,
    name: &str,
    body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<u64, PsError> {
    durable::write_atomic_io(dir, name, body)
        .map_err(|e| PsError::io(format!("writing {}", dir.join(name).display()), e))
}

/// Checks every shard file of `manifest` (size, checksum, structure) without using its rows.
fn verify_all(dir: &Path, manifest: &Manifest) -> Result<(), PsError> {
    manifest.files.iter().try_for_each(|info| shard_file::read_shard_file(dir, info, &manifest.tables, None))
}

/// Refuses to load rows into tables of another shape: same count, names, dim and row length.
fn check_tables(dir: &Path, manifest: &Manifest, job: &[TableSpec]) -> Result<(), PsError> {
    if job.len() != manifest.tables.len() {
        return Err(invalid(
            dir,
            format!("the checkpoint has {} tables but this job has {}", manifest.tables.len(), job.len()),
        ));
    }
    for (i, (c, j)) in manifest.tables.iter().zip(job).enumerate() {
        if c.name != j.name || c.dim != j.dim || c.row_len() != j.row_len() {
            return Err(invalid(
                dir,
                format!(
                    "table {i} is {:?} (dim {}, row_len {}) in the checkpoint but {:?} (dim {}, row_len {}) in this job",
                    c.name,
                    c.dim,
                    c.row_len(),
                    j.name,
                    j.dim,
                    j.row_len()
                ),
            ));
        }
    }
    Ok(())
}

/// Loads the rows of the checkpoint in `dir` that `server` owns, from every shard file (so any
/// number of servers can load a checkpoint written by any other number); returns rows loaded.
///
/// Every file is verified before any row is written, so a damaged checkpoint leaves `server`
/// untouched; only a file replaced between the two passes can still fail midway (and is reported).
pub fn load_into(dir: &Path, manifest: &Manifest, server: &Server) -> Result<u64, PsError> {
    let specs: Vec<TableSpec> = server.tables().iter().map(|s| s.spec().clone()).collect();
    check_tables(dir, manifest, &specs)?;
    let place = fetched(dir, manifest)?;
    load_local(place.dir(), manifest, server).map_err(|e| place.named(e))
}

/// The checkpoint in `dir` with every file of `manifest` on this host (downloaded when `dir` is
/// a URL).
fn fetched(dir: &Path, manifest: &Manifest) -> Result<Place, PsError> {
    let place = Place::of(dir)?;
    place.fetch(manifest.files.iter().map(|f| f.file.as_str()))?;
    Ok(place)
}

/// [`load_into`] from a local directory.
fn load_local(dir: &Path, manifest: &Manifest, server: &Server) -> Result<u64, PsError> {
    verify_all(dir, manifest)?;
    let mut loaded = 0u64;
    let stores = server.tables();
    for info in &manifest.files {
        shard_file::read_shard_file(
            dir,
            info,
            &manifest.tables,
            Some(&mut |t, v, key, row| {
                let store = &stores[t as usize];
                if store.owns_vshard(v) {
                    store.write(key, row);
                    loaded += 1;
                }
            }),
        )?;
    }
    Ok(loaded)
}

/// Calls `f(table, key, row)` on every row of every shard file of the checkpoint in `dir`, once
/// each, after verifying all of them; for loading a checkpoint into one in-memory table.
pub fn load_rows(dir: &Path, manifest: &Manifest, f: &mut dyn FnMut(u32, u64, &[f32])) -> Result<(), PsError> {
    let place = fetched(dir, manifest)?;
    let local = place.dir();
    let mut read = || -> Result<(), PsError> {
        verify_all(local, manifest)?;
        for info in &manifest.files {
            shard_file::read_shard_file(local, info, &manifest.tables, Some(&mut |t, _, key, row| f(t, key, row)))?;
        }
        Ok(())
    };
    read().map_err(|e| place.named(e))
}

/// The manifest of the checkpoint in `dir`, once every shard file it lists has its recorded
/// size and checksum.
fn read_verified(dir: &Path) -> Result<Manifest, PsError> {
    let manifest = read_manifest(dir)?;
    let place = fetched(dir, &manifest)?;
    verify_all(place.dir(), &manifest).map_err(|e| place.named(e))?;
    Ok(manifest)
}

/// Whether `dir` holds a manifest: is a complete checkpoint (or a damaged one, which reading
/// tells).
pub fn is_complete(dir: &Path) -> Result<bool, PsError> {
    if is_url_path(dir) {
        let store = open_dir(dir)?;
        return store
            .exists(MANIFEST_FILE)
            .map_err(|e| PsError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() });
    }
    Ok(dir.join(MANIFEST_FILE).exists())
}

/// Creates the checkpoint directory `dir` and makes its entry durable, so the manifest later
/// written into it cannot outlive a crash while the directory does not. At a URL there is
/// nothing to create: objects need no directory.
pub fn create_dir(dir: &Path) -> Result<(), PsError> {
    if is_url_path(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| PsError::io(format!("creating {}", dir.display()), e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Best effort: some filesystems (FUSE mounts) cannot sync a directory.
        let _ = sync_dir(parent);
    }
    Ok(())
}

/// Deletes the checkpoint in `dir`: its manifest first, so that a crash midway leaves an
/// incomplete directory, never a manifest that lists deleted files.
fn remove(dir: &Path) -> Result<(), PsError> {
    if is_url_path(dir) {
        let store = open_dir(dir)?;
        let failed = |e: starling_fs::remote::RemoteError| PsError::Checkpoint {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        store.remove(MANIFEST_FILE).map_err(failed)?;
        return store.remove_all().map_err(failed);
    }
    let manifest = dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PsError::io(format!("removing {}", manifest.display()), e)),
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PsError::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// Deletes `dir` when it holds no manifest (a checkpoint given up on, never read): gives its
/// space back. A complete checkpoint is never touched.
pub fn remove_unfinished(dir: &Path) -> Result<(), PsError> {
    if is_complete(dir)? {
        return Ok(());
    }
    remove(dir)
}

/// Directory of the checkpoint taken at `step` under `root`.
pub fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:010}"))
}

/// Creates the directory for the checkpoint at `step` and makes its entry in `root` durable, so
/// the manifest later written into it cannot outlive a crash while the directory does not.
pub fn create_step_dir(root: &Path, step: u64) -> Result<PathBuf, PsError> {
    let dir = step_dir(root, step);
    create_dir(&dir)?;
    Ok(dir)
}

/// The step of a `step-N` directory name; other names are not ours.
fn step_of(name: &str) -> Option<u64> {
    let step = name.strip_prefix("step-")?;
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    step.parse().ok()
}

/// The `step-N` subdirectories of `root` (local or at a URL), by increasing step.
fn step_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>, PsError> {
    let mut dirs = Vec::new();
    if is_url_path(root) {
        let names = open_dir(root)?
            .subdirs()
            .map_err(|e| PsError::Checkpoint { path: root.to_path_buf(), message: e.to_string() })?;
        dirs.extend(names.iter().filter_map(|n| Some((step_of(n)?, root.join(n)))));
        dirs.sort();
        return Ok(dirs);
    }
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PsError::io(format!("listing {}", root.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| PsError::io(format!("listing {}", root.display()), e))?;
        let Some(step) = entry.file_name().to_str().and_then(step_of) else { continue };
        if entry.path().is_dir() {
            dirs.push((step, entry.path()));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The newest usable checkpoint: `root` itself when it holds a manifest, else the `step-N`
/// subdirectory with the highest step whose manifest reads and validates and whose shard files
/// all have their recorded size and checksum. A directory without a manifest (a checkpoint cut
/// short, or one being written) is passed over in silence; one with a damaged manifest or shard
/// file is passed over too, and `skipped` is told which and why, so the caller can say that an
/// older checkpoint is used instead.
pub fn latest(root: &Path, skipped: &mut dyn FnMut(&Path, &PsError)) -> Result<Option<(PathBuf, Manifest)>, PsError> {
    if is_complete(root)? {
        // Pointed straight at a checkpoint: a bad manifest there is an error, not something to skip.
        return read_manifest(root).map(|m| Some((root.to_path_buf(), m)));
    }
    for (_, dir) in step_dirs(root)?.into_iter().rev() {
        if !is_complete(&dir)? {
            continue;
        }
        match read_verified(&dir) {
            Ok(m) => return Ok(Some((dir, m))),
            Err(e) => skipped(&dir, &e),
        }
    }
    Ok(None)
}

/// Deletes all but the newest `keep` complete checkpoints under `root` (at least the newest is
/// always kept), and incomplete step directories older than the newest complete one (newer ones
/// may still be being written). Returns the directories removed.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>, PsError> {
    let dirs = step_dirs(root)?;
    // At a URL a manifest that exists counts (a failed download must not delete a good
    // checkpoint); a local one must also read.
    let complete: Vec<bool> = if is_url_path(root) {
        dirs.iter().map(|(_, d)| is_complete(d)).collect::<Result<_, _>>()?
    } else {
        dirs.iter().map(|(_, d)| read_manifest(d).is_ok()).collect()
    };
    let Some(newest) = complete.iter().rposition(|&c| c) else { return Ok(Vec::new()) };
    let mut kept = 0;
    let mut removed = Vec::new();
    for (i, (_, dir)) in dirs.iter().enumerate().rev() {
        let remove = if complete[i] {
            kept += 1;
            kept > keep.max(1)
        } else {
            i < newest
        };
        if remove {
            self::remove(dir)?;
            removed.push(dir.clone());
        }
    }
    Ok(removed)
}
