//! Where a checkpoint's files are read and written. A local directory is used as it is; a
//! checkpoint at an object store URL (`s3://bucket/ck/step-0000000100`) goes through a scratch
//! directory of this process's: a file is written there as locally (atomically, its checksum
//! computed on the way) and then uploaded, and files are downloaded there before they are read.
//! The scratch directory is removed when the [`Place`] is dropped.
//!
//! An object appears whole or not at all, so the rule "no manifest, no checkpoint" carries over:
//! the manifest is uploaded last, and a checkpoint is complete when its manifest object exists.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use starling_fs::remote::{self, Dir, RemoteError};

use crate::error::PsError;

/// A checkpoint directory, local or at a URL, and where its files are on this host.
pub(super) struct Place {
    /// The directory as the job names it (a path or a URL), for messages.
    pub shown: PathBuf,
    /// Where this process reads and writes the files.
    local: PathBuf,
    remote: Option<Dir>,
}

/// A checkpoint error about `dir` from a store.
fn remote_error(dir: &Path, e: RemoteError) -> PsError {
    PsError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() }
}

/// Opens the object store directory at `dir`, a URL.
pub(super) fn open_dir(dir: &Path) -> Result<Dir, PsError> {
    Dir::open(&dir.to_string_lossy()).map_err(|e| remote_error(dir, e))
}

impl Place {
    /// The checkpoint directory `dir`: a local path, or a URL.
    pub fn of(dir: &Path) -> Result<Place, PsError> {
        if !remote::is_url_path(dir) {
            return Ok(Place { shown: dir.to_path_buf(), local: dir.to_path_buf(), remote: None });
        }
        static SCRATCHES: AtomicU64 = AtomicU64::new(0);
        let n = SCRATCHES.fetch_add(1, Ordering::Relaxed);
        let key = crc32fast::hash(dir.as_os_str().as_encoded_bytes());
        // Unique across processes that share the staging directory (pods with equal pids too).
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("{key:08x}-{}-{nanos:x}-{n}", std::process::id());
        let local = remote::staging_dir().join("checkpoints").join(name);
        std::fs::create_dir_all(&local).map_err(|e| PsError::io(format!("creating {}", local.display()), e))?;
        Ok(Place { shown: dir.to_path_buf(), local, remote: Some(open_dir(dir)?) })
    }

    /// Where the files are read and written on this host.
    pub fn dir(&self) -> &Path {
        &self.local
    }

    /// After `name` was written into [`Place::dir`]: uploads it (and drops the local copy).
    pub fn publish(&self, name: &str) -> Result<(), PsError> {
        let Some(store) = &self.remote else { return Ok(()) };
        let local = self.local.join(name);
        store.upload(name, &local).map_err(|e| remote_error(&self.shown, e))?;
        let _ = std::fs::remove_file(&local);
        Ok(())
    }

    /// Before `names` are read from [`Place::dir`]: downloads them; one that does not exist is
    /// left missing, for the reader to report.
    pub fn fetch<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), PsError> {
        let Some(store) = &self.remote else { return Ok(()) };
        for name in names {
            store.download(name, &self.local.join(name)).map_err(|e| remote_error(&self.shown, e))?;
        }
        Ok(())
    }

    /// `e` with the scratch directory replaced by the checkpoint's own name, so that a message
    /// names the object at fault.
    pub fn named(&self, e: PsError) -> PsError {
        if self.remote.is_none() {
            return e;
        }
        let scratch = self.local.display().to_string();
        let shown = self.shown.display().to_string();
        match e {
            PsError::Checkpoint { path, message } => {
                let path = match path.strip_prefix(&self.local) {
                    Ok(rel) => self.shown.join(rel),
                    Err(_) => path,
                };
                PsError::Checkpoint { path, message: message.replace(&scratch, &shown) }
            }
            PsError::Io { context, source } => PsError::Io { context: context.replace(&scratch, &shown), source },
            other => other,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.remote.is_some() {
            let _ = std::fs::remove_dir_all(&self.local);
        }
    }
}
