//! A binary example cache: text input is parsed and hashed once, and later passes (or tuning
//! trials) read examples from the cache instead of parsing again.
//!
//! Keys are stored unfolded (written by a pipeline with `hash_bits = 0`) and folded as they are
//! read, so one cache serves every `hash_bits`. The caller's `fingerprint` in the header (input
//! files, sizes, mtimes, pipeline config) says which input the cache was made from: a cache whose
//! fingerprint differs is stale ([`cache_status`]) and must be rebuilt, never used.
//!
//! Layout (little-endian):
//! ```text
//! "STARLING-CACHE\0\0" | version u32 | header length u32 | header (JSON) | crc32(header) u32
//! blocks:     payload length u32 (1..=64 MiB) | crc32(payload) u32 | payload: whole examples
//! end block:  0u32 | examples u64 | features u64 | crc32(examples, features) u32 | end of file
//! example:    varint(features << 1 | has_weight) | label f32 | [weight f32]
//!             features × (key u64 | varint(field << 1 | has_value) | [value f32])
//! ```
//! Weights and values equal to 1.0 are left out, so a one-hot feature with a field below 64
//! takes 9 bytes. A block's CRC is checked before any example in it is decoded, and a file
//! without its end block (a writer that never finished) is refused when opened.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use starling_core::hash::fold_mask;
use starling_core::{Example, Feature};
use starling_fs::AtomicFile;

use crate::error::DataError;

/// First bytes of every cache file.
pub const CACHE_MAGIC: &[u8; 16] = b"STARLING-CACHE\0\0";
/// Format version written; readers refuse any other.
pub const CACHE_VERSION: u32 = 1;
/// Payload bytes per block the writer aims for.
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;
/// Largest block payload a reader accepts: bounds what a corrupt length can make it allocate.
pub const MAX_BLOCK_SIZE: usize = 64 << 20;
/// Headers beyond this are corruption, not fingerprints.
const MAX_HEADER: usize = 16 << 20;
/// Magic, version and header length.
const PREAMBLE_LEN: u64 = 16 + 4 + 4;
/// End marker, counts and their CRC.
const END_LEN: u64 = 4 + 8 + 8 + 4;
/// Bytes of a 1.0 `f32`, the value and weight that are not stored.
const ONE: u32 = 0x3f80_0000;
/// An example's worst case beyond its features: head varint, label, weight.
const MAX_EXAMPLE_HEAD: usize = 10 + 4 + 4;
/// A feature's worst case: key, a 33-bit varint, value.
const MAX_FEATURE_LEN: usize = 8 + 5 + 4;
/// A feature's best case: key and a one-byte varint; bounds a count before anything is reserved.
const MIN_FEATURE_LEN: usize = 8 + 1;

/// What a cache says about itself; `fingerprint` identifies the input it was made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeader {
    /// The caller's identity of the input (files, sizes, mtimes, pipeline config).
    pub fingerprint: String,
    /// Number of fields of the pipeline that made the examples.
    pub num_fields: u32,
    /// Field names, in field order.
    pub field_names: Vec<String>,
    /// Free-form description of where the examples came from.
    #[serde(default)]
    pub source: String,
}

/// Counts of a cache written or read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Examples.
    pub examples: u64,
    /// Features over all examples.
    pub features: u64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Writes examples into a cache; nothing is usable until [`CacheWriter::finish`] writes the end
/// block. After an error the output is unusable: drop it (an [`AtomicFile`] then vanishes).
pub struct CacheWriter<W: Write> {
    out: W,
    block: Vec<u8>,
    block_size: usize,
    stats: CacheStats,
}

impl<W: Write> CacheWriter<W> {
    /// A writer into `out` with blocks of about [`DEFAULT_BLOCK_SIZE`]; writes the header now.
    pub fn new(out: W, header: &CacheHeader) -> io::Result<Self> {
        Self::with_block_size(out, header, DEFAULT_BLOCK_SIZE)
    }

    /// A writer whose blocks close once they reach `block_size` bytes (at most
    /// [`MAX_BLOCK_SIZE`]); small sizes let tests span many blocks.
    pub fn with_block_size(mut out: W, header: &CacheHeader, block_size: usize) -> io::Result<Self> {
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        if json.len() > MAX_HEADER {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cache header over 16 MiB"));
        }
        out.write_all(CACHE_MAGIC)?;
        out.write_all(&CACHE_VERSION.to_le_bytes())?;
        out.write_all(&(json.len() as u32).to_le_bytes())?;
        out.write_all(&json)?;
        out.write_all(&crc32fast::hash(&json).to_le_bytes())?;
        let block_size = block_size.clamp(1, MAX_BLOCK_SIZE);
        Ok(CacheWriter {
            out,
            block: Vec::with_capacity(block_size.min(DEFAULT_BLOCK_SIZE) + 4096),
            block_size,
            stats: CacheStats { bytes: PREAMBLE_LEN + json.len() as u64 + 4, ..CacheStats::default() },
        })
    }

    /// Appends one example (its keys as they are: write unfolded keys).
    pub fn push(&mut self, ex: &Example) -> io::Result<()> {
        let n = ex.features.len();
        let bound = n.saturating_mul(MAX_FEATURE_LEN).saturating_add(MAX_EXAMPLE_HEAD);
        if bound > MAX_BLOCK_SIZE {
            let msg = format!("an example with {n} features does not fit in a cache block");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        if self.block.len() + bound > MAX_BLOCK_SIZE {
            self.flush_block()?;
        }
        let b = &mut self.block;
        let has_weight = ex.weight.to_bits() != ONE;
        put_varint(b, (n as u64) << 1 | u64::from(has_weight));
        b.extend_from_slice(&ex.label.to_le_bytes());
        if has_weight {
            b.extend_from_slice(&ex.weight.to_le_bytes());
        }
        for f in &ex.features {
            let has_value = f.value.to_bits() != ONE;
            b.extend_from_slice(&f.key.to_le_bytes());
            put_varint(b, u64::from(f.field) << 1 | u64::from(has_value));
            if has_value {
                b.extend_from_slice(&f.value.to_le_bytes());
            }
        }
        self.stats.examples += 1;
        self.stats.features += n as u64;
        if self.block.len() >= self.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Counts so far (`bytes` excludes the open block and the end block).
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Writes the last block and the end block, flushes, and returns the output and the counts.
    pub fn finish(mut self) -> io::Result<(W, CacheStats)> {
        self.flush_block()?;
        let mut end = [0u8; END_LEN as usize];
        end[4..12].copy_from_slice(&self.stats.examples.to_le_bytes());
        end[12..20].copy_from_slice(&self.stats.features.to_le_bytes());
        let crc = crc32fast::hash(&end[4..20]);
        end[20..].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        self.stats.bytes += END_LEN;
        Ok((self.out, self.stats))
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.out.write_all(&(self.block.len() as u32).to_le_bytes())?;
        self.out.write_all(&crc32fast::hash(&self.block).to_le_bytes())?;
        self.out.write_all(&self.block)?;
        self.stats.bytes += 8 + self.block.len() as u64;
        self.block.clear();
        Ok(())
    }
}

impl CacheWriter<AtomicFile> {
    /// A writer of the cache file `path`, which appears only when [`CacheWriter::commit`] succeeds.
    pub fn create(path: &Path, header: &CacheHeader) -> io::Result<Self> {
        Self::new(AtomicFile::create(path)?, header)
    }

    /// Finishes the cache and renames it into place, durably.
    pub fn commit(self) -> io::Result<CacheStats> {
        let (file, stats) = self.finish()?;
        file.commit()?;
        Ok(stats)
    }
}

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Whether a cache file can serve a job: see [`cache_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No file at the path: build the cache.
    Missing,
    /// A cache that must be rebuilt (another fingerprint, another version, unfinished), and why.
    Stale(String),
    /// A complete cache of the job's input.
    Ready(CacheHeader),
}

/// Checks the cache at `path` against `fingerprint` (header, version and end block; block CRCs
/// are checked as they are read). A file that is not a cache at all is an error, not stale, so
/// a mistyped path never overwrites someone's data.
pub fn cache_status(path: &Path, fingerprint: &str) -> Result<CacheStatus, DataError> {
    match Opened::open(path) {
        Ok(o) if o.header.fingerprint == fingerprint => Ok(CacheStatus::Ready(o.header)),
        Ok(_) => Ok(CacheStatus::Stale(format!("{}: made from other input or settings", path.display()))),
        Err(DataError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(CacheStatus::Missing),
        Err(
            e @ (DataError::CacheVersion { .. }
            | DataError::CacheTruncated { .. }
            | DataError::CacheChecksum { .. }
            | DataError::CacheCorrupt { .. }),
        ) => Ok(CacheStatus::Stale(e.to_string())),
        Err(e) => Err(e),
    }
}

/// The header of the cache at `path` (without checking the rest); `None` when there is no file.
pub fn read_cache_header(path: &Path) -> Result<Option<CacheHeader>, DataError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let (header, _) = read_preamble(&mut BufReader::new(file), path, len)?;
    Ok(Some(header))
}

/// A cache file whose header and end block have been checked, positioned at its first block.
struct Opened {
    file: BufReader<File>,
    header: CacheHeader,
    data_start: u64,
    totals: CacheStats,
}

impl Opened {
    fn open(path: &Path) -> Result<Opened, DataError> {
        let io_err = |e| DataError::io(path, e);
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut file = BufReader::with_capacity(64 << 10, file);
        let (header, data_start) = read_preamble(&mut file, path, len)?;
        let missing_end = || DataError::CacheTruncated {
            path: path.into(),
            offset: len,
            expected: "an end block (the cache was never finished)".into(),
        };
        if len < data_start + END_LEN {
            return Err(missing_end());
        }
        let mut end = [0u8; END_LEN as usize];
        file.seek(SeekFrom::Start(len - END_LEN)).map_err(io_err)?;
        file.read_exact(&mut end).map_err(io_err)?;
        let (marker, crc) = (le_u32(&end[..4]), le_u32(&end[20..]));
        if marker != 0 || crc != crc32fast::hash(&end[4..20]) {
            return Err(missing_end());
        }
        let totals = CacheStats { examples: le_u64(&end[4..12]), features: le_u64(&end[12..20]), bytes: len };
        file.seek(SeekFrom::Start(data_start)).map_err(io_err)?;
        Ok(Opened { file, header, data_start, totals })
    }
}

/// Reads and checks magic, version and header; returns the header and where blocks start.
fn read_preamble(r: &mut impl Read, path: &Path, len: u64) -> Result<(CacheHeader, u64), DataError> {
    let mut pre = [0u8; PREAMBLE_LEN as usize];
    let got = read_full(r, &mut pre).map_err(|e| DataError::io(path, e))?;
    if pre[..got.min(16)] != CACHE_MAGIC[..got.min(16)] || got == 0 {
        return Err(DataError::NotACache { path: path.into() });
    }
    let truncated = |offset: u64, expected: &str| DataError::CacheTruncated {
        path: path.into(),
        offset,
        expected: expected.into(),
    };
    if got < pre.len() {
        return Err(truncated(got as u64, "the cache header"));
    }
    let found = le_u32(&pre[16..20]);
    if found != CACHE_VERSION {
        return Err(DataError::CacheVersion { path: path.into(), found, supported: CACHE_VERSION });
    }
    let header_len = le_u32(&pre[20..24]) as usize;
    if header_len > MAX_HEADER {
        let expected = format!("a header length of at most {MAX_HEADER} bytes, found {header_len}");
        return Err(DataError::CacheCorrupt { path: path.into(), offset: 20, expected });
    }
    let data_start = PREAMBLE_LEN + header_len as u64 + 4;
    if len < data_start {
        return Err(truncated(len, &format!("a header of {header_len} bytes and its CRC")));
    }
    let mut json = vec![0u8; header_len + 4];
    r.read_exact(&mut json).map_err(|e| DataError::io(path, e))?;
    let (stored, computed) = (le_u32(&json[header_len..]), crc32fast::hash(&json[..header_len]));
    if stored != computed {
        return Err(DataError::CacheChecksum {
            path: path.into(),
            offset: PREAMBLE_LEN,
            what: "header",
            stored,
            computed,
        });
    }
    let header = serde_json::from_slice(&json[..header_len]).map_err(|e| DataError::CacheCorrupt {
        path: path.into(),
        offset: PREAMBLE_LEN,
        expected: format!("a JSON cache header ({e})"),
    })?;
    Ok((header, data_start))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

mod reader;
pub use reader::CacheReader;

#[cfg(test)]
mod tests;
