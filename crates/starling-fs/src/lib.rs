//! Durable files: either complete under their final name or absent, with a running CRC32. What
//! checkpoints, model files and example caches are written with.
//!
//! A file is written under a hidden temporary name in its final directory, flushed, fsynced,
//! renamed, and the directory fsynced, so a crash or a full disk leaves either the whole file or
//! nothing under the final name, never a prefix that a later reader could mistake for the file.
//! [`remote`] reaches files at object store URLs.

pub mod remote;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A reader or writer that keeps a running CRC32 of what passes through.
pub struct Crc<T> {
    /// The wrapped reader or writer.
    pub inner: T,
    /// CRC32 of the bytes so far.
    pub hasher: crc32fast::Hasher,
}

impl<T> Crc<T> {
    /// Wraps `inner` with a fresh checksum.
    pub fn new(inner: T) -> Self {
        Crc { inner, hasher: crc32fast::Hasher::new() }
    }

    /// CRC32 of the bytes so far.
    pub fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Temporary name of `name` while it is written: hidden, and unique per process so servers
/// sharing a directory never write the same temporary file.
pub fn temp_name(name: &str) -> String {
    temp_os_name(OsStr::new(name)).to_string_lossy().into_owned()
}

/// [`temp_name`] for names that need not be UTF-8.
fn temp_os_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", std::process::id()));
    tmp
}

/// Makes a rename in `dir` durable; without it a crash can forget the rename.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A file written under a temporary name and renamed into place by [`AtomicFile::commit`];
/// dropped without commit, it removes the temporary file and leaves `path` as it was.
///
/// Two `AtomicFile`s for the same path in one process share the temporary name: don't.
pub struct AtomicFile {
    /// `None` only while `commit` runs, so `Drop` can tell a half-finished commit.
    out: Option<BufWriter<File>>,
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    /// Set once the rename is done: the temporary file no longer exists to be removed.
    renamed: bool,
}

impl AtomicFile {
    /// Opens a temporary file next to `path` (named by [`temp_name`]) for writing.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file name", path.display()))
        })?;
        // A bare file name has an empty parent; `sync_dir("")` would fail.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(temp_os_name(name));
        let file = File::create(&tmp)?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            path: path.to_path_buf(),
            tmp,
            dir,
            renamed: false,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, fsyncs, renames the file to its final path and fsyncs the directory; returns the
    /// file size. On failure the temporary file is removed.
    pub fn commit(mut self) -> io::Result<u64> {
        let out = self.out.take().ok_or_else(|| io::Error::other("atomic file already committed"))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        // Closed before the rename: some platforms refuse to rename an open file.
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        self.renamed = true;
        sync_dir(&self.dir)?;
        Ok(len)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("atomic file already committed")),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.write_all(buf),
            None => Err(io::Error::other("atomic file already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Closed first so the removal also works where open files cannot be removed.
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `dir/name` atomically from what `body` writes (see [`AtomicFile`]); returns the file
/// size. On any failure the temporary file is removed and nothing exists under `name` that was
/// not there before.
pub fn write_atomic_io(
    dir: &Path,
    name: &str,
    body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let mut file = AtomicFile::create(&dir.join(name))?;
    body(&mut file)?;
    file.commit()
}

/// Checks, before the work that produces it, that a file can be written at `path`: creates its
/// directory and a temporary file there, which is removed again. A directory at `path` is refused.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if remote::is_url_path(path) {
        // Only checkpoints go to object stores; this file would land in a local `s3:` directory.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a URL: this file is written to a local path (checkpoints of cluster jobs may go to object store URLs)",
        ));
    }
    if path.is_dir() {
        return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory, not a file"));
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    AtomicFile::create(path).map(drop)
}

/// Writes `bytes` to `path` atomically (see [`AtomicFile`]): whole under its name, or not there.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn commit_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new contents").unwrap();
        // Until the commit the old file is intact and the new one is hidden.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), vec![temp_name("a.bin"), "a.bin".to_string()]);
        assert_eq!(f.commit().unwrap(), 12);
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(names(dir.path()), vec!["a.bin".to_string()]);
    }

    #[test]
    fn drop_without_commit_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.bin");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(&[7u8; 3 << 20]).unwrap();
        }
        assert!(names(dir.path()).is_empty());
        let r = write_atomic_io(dir.path(), "c.bin", &mut |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert!(names(dir.path()).is_empty());
        assert_eq!(write_atomic_io(dir.path(), "c.bin", &mut |w| w.write_all(b"xyz")).unwrap(), 3);
        assert_eq!(names(dir.path()), vec!["c.bin".to_string()]);
    }

    #[test]
    fn missing_directory_and_bare_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AtomicFile::create(&dir.path().join("missing/x.bin")).is_err());
        assert!(AtomicFile::create(Path::new("/")).is_err());
        assert_eq!(temp_name("x.shard"), format!(".x.shard.tmp-{}", std::process::id()));
    }

    #[test]
    fn crc_matches_crc32fast() {
        let mut w = Crc::new(Vec::new());
        w.write_all(b"hello world").unwrap();
        assert_eq!(w.crc(), crc32fast::hash(b"hello world"));
        let mut r = Crc::new(&b"hello world"[..]);
        let mut s = Vec::new();
        r.read_to_end(&mut s).unwrap();
        assert_eq!(r.crc(), w.crc());
    }
}
