//! One server's shard file: its rows of every table, grouped by virtual shard, with a CRC32.
//!
//! Layout (little-endian):
//! ```text
//! "STARSHRD" | format version u32 | server u32 | table count u32 |
//!   per table: name length u32 | name (UTF-8) | dim u32 | row_len u32 |
//! vshard count u32 | vshards u32 × count (increasing) |
//! per table, per listed vshard: vshard u32 | rows u64 | rows × (key u64, row_len × f32), keys increasing |
//! crc32 of everything before it (u32)
//! ```
//! The virtual shards are listed up front so a reader knows how many blocks each table has, and a
//! loader can tell which blocks a re-sharded server keeps.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::durable::Crc;
use super::place::Place;
use super::{invalid, write_atomic};
use crate::error::PsError;
use crate::server::Server;
use crate::shard::{vshard_of, NUM_VSHARDS};
use crate::table::TableSpec;

const MAGIC: &[u8; 8] = b"STARSHRD";
/// Current shard file format version; readers refuse newer ones.
pub const SHARD_FORMAT_VERSION: u32 = 1;
/// Limits on header fields, checked before allocating: beyond them the file is corrupt.
const MAX_NAME: u32 = 4096;
const MAX_TABLES: u32 = 1 << 16;

/// What a server reports to the coordinator about the shard file it wrote; the manifest keeps it
/// so a reader can check the file's size and checksum before trusting a byte of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFileInfo {
    /// File name inside the checkpoint directory.
    pub file: String,
    /// Server that wrote it.
    pub server: usize,
    /// Rows of all tables in it.
    pub rows: u64,
    /// File size, checksum included.
    pub bytes: u64,
    /// CRC32 of everything before the trailing checksum.
    pub crc32: u32,
    /// Virtual shards it holds, increasing.
    pub vshards: Vec<u32>,
}

/// File name of server `id`'s shard file.
pub fn shard_file_name(id: usize) -> String {
    format!("server-{id:04}.shard")
}

/// Appends `row` as little-endian f32s.
fn put_floats(buf: &mut Vec<u8>, row: &[f32]) {
    if cfg!(target_endian = "little") {
        buf.extend_from_slice(bytemuck::cast_slice(row));
    } else {
        row.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
    }
}

/// Writes `server`'s shard file (every table, every owned virtual shard) into `dir`, atomically.
///
/// Each virtual shard's rows are encoded under that shard's lock into a buffer reused across
/// shards, so the row count written before them is exact even if pushes continue, and memory
/// stays at one virtual shard (about 1/1024 of a table), never the whole file.
pub fn write_shard_file(dir: &Path, server: &Server) -> Result<ShardFileInfo, PsError> {
    let place = Place::of(dir)?;
    let info = write_in(place.dir(), server).map_err(|e| place.named(e))?;
    place.publish(&info.file)?;
    Ok(info)
}

/// [`write_shard_file`] into a local directory.
fn write_in(dir: &Path, server: &Server) -> Result<ShardFileInfo, PsError> {
    let file = shard_file_name(server.id());
    let path = dir.join(&file);
    let tables = server.tables();
    let vshards = tables.first().map(|t| t.owned()).unwrap_or_default();
    if let Some(t) = tables.iter().find(|t| t.owned() != vshards) {
        return Err(invalid(
            &path,
            format!("table {:?} owns other virtual shards than table {:?}", t.spec().name, tables[0].spec().name),
        ));
    }
    let too_big = |what: &str| std::io::Error::other(format!("{what} does not fit the format's u32"));
    let u32_of = |x: usize, what: &str| u32::try_from(x).map_err(|_| too_big(what));
    let mut rows = 0u64;
    let mut crc = 0u32;
    let bytes = write_atomic(dir, &file, &mut |out| {
        let mut w = Crc { inner: &mut *out, hasher: crc32fast::Hasher::new() };
        w.write_all(MAGIC)?;
        w.write_all(&SHARD_FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&u32_of(server.id(), "server id")?.to_le_bytes())?;
        w.write_all(&u32_of(tables.len(), "table count")?.to_le_bytes())?;
        for t in tables {
            let name = t.spec().name.as_bytes();
            w.write_all(&u32_of(name.len(), "table name length")?.to_le_bytes())?;
            w.write_all(name)?;
            w.write_all(&u32_of(t.spec().dim, "dim")?.to_le_bytes())?;
            w.write_all(&u32_of(t.spec().row_len(), "row_len")?.to_le_bytes())?;
        }
        w.write_all(&u32_of(vshards.len(), "vshard count")?.to_le_bytes())?;
        for v in &vshards {
            w.write_all(&v.to_le_bytes())?;
        }
        let mut buf = Vec::new();
        for t in tables {
            for &v in &vshards {
                buf.clear();
                let mut n = 0u64;
                t.for_each_row_in(v, &mut |key, row| {
                    buf.extend_from_slice(&key.to_le_bytes());
                    put_floats(&mut buf, row);
                    n += 1;
                });
                w.write_all(&v.to_le_bytes())?;
                w.write_all(&n.to_le_bytes())?;
                w.write_all(&buf)?;
                rows += n;
            }
        }
        crc = w.hasher.finalize();
        out.write_all(&crc.to_le_bytes())
    })?;
    Ok(ShardFileInfo { file, server: server.id(), rows, bytes, crc32: crc, vshards })
}

/// Receives the rows read from a shard file: (table, vshard, key, row).
pub(super) type RowSink<'a> = &'a mut dyn FnMut(u32, u32, u64, &[f32]);

/// Reads the shard file `info` describes in `dir`, checking size, checksum and structure against
/// `info` and the manifest's `tables`; rows go to `sink` as they are read (callers that must not
/// apply rows of a damaged file run a first pass without a sink).
pub(super) fn read_shard_file(
    dir: &Path,
    info: &ShardFileInfo,
    tables: &[TableSpec],
    sink: Option<RowSink<'_>>,
) -> Result<(), PsError> {
    let path = dir.join(&info.file);
    let file = File::open(&path).map_err(|e| PsError::io(format!("opening {}", path.display()), e))?;
    let len = file.metadata().map_err(|e| PsError::io(format!("reading {}", path.display()), e))?.len();
    if len != info.bytes {
        let what = if len < info.bytes { "truncated" } else { "not the file this checkpoint wrote" };
        return Err(invalid(
            &path,
            format!("{len} bytes, but the manifest records {}: the file is {what}", info.bytes),
        ));
    }
    let mut r = Reader {
        r: Crc { inner: BufReader::with_capacity(1 << 20, file), hasher: crc32fast::Hasher::new() },
        pos: 0,
        body: len.saturating_sub(4),
        path: &path,
    };
    match r.scan(info, tables, sink) {
        // A flipped byte can surface as any structural error; name the root cause when it is one.
        Err(e @ PsError::Checkpoint { .. }) => match raw_checksums(&path, len) {
            Ok((computed, stored)) if computed != stored => Err(mismatch(&path, computed, stored)),
            _ => Err(e),
        },
        other => other,
    }
}

fn mismatch(path: &Path, computed: u32, stored: u32) -> PsError {
    invalid(path, format!("checksum mismatch: the file records {stored:#010x} but its contents give {computed:#010x}"))
}

/// CRC32 of the first `len - 4` bytes of `path`, and the checksum stored after them.
fn raw_checksums(path: &Path, len: u64) -> std::io::Result<(u32, u32)> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut w = Crc { inner: std::io::sink(), hasher: crc32fast::Hasher::new() };
    std::io::copy(&mut (&mut f).take(len.saturating_sub(4)), &mut w)?;
    let mut stored = [0u8; 4];
    f.read_exact(&mut stored)?;
    Ok((w.hasher.finalize(), u32::from_le_bytes(stored)))
}

/// A shard file being parsed: the position is tracked so nothing reads into the checksum.
struct Reader<'p> {
    r: Crc<BufReader<File>>,
    pos: u64,
    /// Bytes before the trailing checksum.
    body: u64,
    path: &'p Path,
}

impl Reader<'_> {
    fn err(&self, message: String) -> PsError {
        invalid(self.path, message)
    }

    fn bytes(&mut self, buf: &mut [u8], what: &str) -> Result<(), PsError> {
        let truncated = || invalid(self.path, format!("truncated: the file ends inside {what}"));
        if self.pos + buf.len() as u64 > self.body {
            return Err(truncated());
        }
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => truncated(),
            _ => PsError::io(format!("reading {}", self.path.display()), e),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, PsError> {
        let mut b = [0u8; 4];
        self.bytes(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, PsError> {
        let mut b = [0u8; 8];
        self.bytes(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Parses the whole file and checks its checksum against the file's and the manifest's.
    fn scan(
        &mut self,
        info: &ShardFileInfo,
        tables: &[TableSpec],
        mut sink: Option<RowSink<'_>>,
    ) -> Result<(), PsError> {
        let mut magic = [0u8; 8];
        if self.bytes(&mut magic, "the magic number").is_err() || &magic != MAGIC {
            return Err(self.err("not a Starling checkpoint shard file (bad magic number)".into()));
        }
        let version = self.u32("the version")?;
        if version == 0 || version > SHARD_FORMAT_VERSION {
            return Err(self.err(format!(
                "shard format version {version}; this build of Starling reads versions 1 to {SHARD_FORMAT_VERSION}"
            )));
        }
        let server = self.u32("the server id")?;
        if server as usize != info.server {
            return Err(self.err(format!("written by server {server}, but the manifest says server {}", info.server)));
        }
        let count = self.u32("the table count")?;
        if count > MAX_TABLES || count as usize != tables.len() {
            return Err(self.err(format!("holds {count} tables, but the manifest lists {}", tables.len())));
        }
        let mut row_lens = Vec::with_capacity(tables.len());
        for (i, spec) in tables.iter().enumerate() {
            let name_len = self.u32("a table name")?;
            if name_len > MAX_NAME {
                return Err(self.err(format!("table {i} has a {name_len}-byte name: the file is corrupt")));
            }
            let mut name = vec![0u8; name_len as usize];
            self.bytes(&mut name, "a table name")?;
            let name = String::from_utf8_lossy(&name);
            let (dim, row_len) = (self.u32("a table header")?, self.u32("a table header")?);
            if name != spec.name || dim as usize != spec.dim || row_len as usize != spec.row_len() {
                return Err(self.err(format!(
                    "table {i} is {name:?} (dim {dim}, row_len {row_len}) in the file but {:?} (dim {}, row_len {}) \
                     in the manifest",
                    spec.name,
                    spec.dim,
                    spec.row_len()
                )));
            }
            row_lens.push(row_len as usize);
        }
        let nv = self.u32("the virtual shard count")?;
        if nv > NUM_VSHARDS {
            return Err(self.err(format!("lists {nv} virtual shards, more than the {NUM_VSHARDS} there are")));
        }
        let mut vshards = Vec::with_capacity(nv as usize);
        for _ in 0..nv {
            vshards.push(self.u32("the virtual shard list")?);
        }
        if vshards != info.vshards {
            return Err(self.err("holds other virtual shards than the manifest records".into()));
        }
        let mut buf = Vec::new();
        let mut row = Vec::new();
        for (t, (spec, &row_len)) in tables.iter().zip(&row_lens).enumerate() {
            let row_bytes = 8 + 4 * row_len as u64;
            buf.resize(row_bytes as usize, 0);
            row.resize(row_len, 0f32);
            for &v in &vshards {
                let got = self.u32("a virtual shard header")?;
                if got != v {
                    return Err(self.err(format!("table {:?}: found virtual shard {got} where {v} belongs", spec.name)));
                }
                let n = self.u64("a virtual shard header")?;
                let left = self.body - self.pos;
                let fits = matches!(n.checked_mul(row_bytes), Some(need) if need <= left);
                if !fits {
                    return Err(self.err(format!(
                        "truncated: table {:?} virtual shard {v} announces {n} rows of {row_bytes} bytes, but only \
                         {left} bytes remain",
                        spec.name
                    )));
                }
                let mut prev = None;
                for _ in 0..n {
                    self.bytes(&mut buf, "a row")?;
                    let key = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    if vshard_of(key) != v {
                        return Err(self.err(format!(
                            "table {:?}: key {key} is in virtual shard {}, not in {v} where the file puts it",
                            spec.name,
                            vshard_of(key)
                        )));
                    }
                    if prev.is_some_and(|p| p >= key) {
                        return Err(self.err(format!("table {:?} virtual shard {v}: keys out of order", spec.name)));
                    }
                    prev = Some(key);
                    if let Some(f) = sink.as_mut() {
                        for (x, b) in row.iter_mut().zip(buf[8..].chunks_exact(4)) {
                            *x = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                        }
                        f(t as u32, v, key, &row);
                    }
                }
            }
        }
        if self.pos != self.body {
            return Err(self.err(format!("{} bytes after the last row: the file is corrupt", self.body - self.pos)));
        }
        let computed = self.r.hasher.clone().finalize();
        let mut stored = [0u8; 4];
        self.r.inner.read_exact(&mut stored).map_err(|e| PsError::io(format!("reading {}", self.path.display()), e))?;
        let stored = u32::from_le_bytes(stored);
        if computed != stored {
            return Err(mismatch(self.path, computed, stored));
        }
        if stored != info.crc32 {
            return Err(self.err(format!(
                "the file records checksum {stored:#010x} but the manifest records {:#010x}: it is not the file this \
                 checkpoint wrote",
                info.crc32
            )));
        }
        Ok(())
    }
}
