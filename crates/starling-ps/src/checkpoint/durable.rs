//! Files that are either complete under their final name or absent, with a running CRC32: what
//! checkpoints and single-machine model files are written with.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

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
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Temporary name of `name` while it is written: hidden, and unique per process so servers
/// sharing a directory never write the same temporary file.
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// Makes a rename in `dir` durable; without it a crash can forget the rename.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `dir/name` atomically from what `body` writes (temporary file, fsync, rename, directory
/// fsync); returns the file size. On any failure the temporary file is removed and nothing exists
/// under `name` that was not there before.
pub fn write_atomic_io(
    dir: &Path,
    name: &str,
    body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let path = dir.join(name);
    let tmp = dir.join(temp_name(name));
    let result = (|| -> std::io::Result<u64> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        body(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        drop(file);
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        Ok(len)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
