//! [`CacheReader`]: streams examples out of a cache, one verified block at a time.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::*;

/// Bytes of a memory page (the granularity of releasing a decoded block).
const PAGE: usize = 4096;

/// Where the reader is in its pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    /// The end block was read and the totals matched.
    Done,
    /// An error was returned; only [`CacheReader::rewind`] resumes.
    Failed,
}

/// Reads examples from a cache file, folding keys to `hash_bits`, with memory bounded by one block.
///
/// The file is mapped, not read: examples are decoded straight out of the page cache, and the
/// pages of a block are released from the process once it is decoded, so the resident memory
/// stays about one block whatever the file's size.
pub struct CacheReader {
    path: PathBuf,
    map: Mmap,
    header: CacheHeader,
    hash_bits: u32,
    data_start: u64,
    totals: CacheStats,
    /// File offset of the next byte to read.
    offset: u64,
    /// Where the current block's payload lies in `map`, CRC already checked.
    block: Range<usize>,
    /// File offset of `block[0]` (tests use it to tell which block an example came from).
    pub(super) block_start: u64,
    pos: usize,
    examples: u64,
    features: u64,
    state: State,
    /// This reader's share: blocks `i` with `i % world == rank`.
    rank: usize,
    world: usize,
    /// Index of the next block in the file.
    block_index: usize,
}

impl CacheReader {
    /// Opens `path`, checking magic, version, header and end block, to read keys folded to
    /// `hash_bits` (0 keeps them whole).
    pub fn open(path: &Path, hash_bits: u32) -> Result<CacheReader, DataError> {
        if hash_bits > 64 {
            return Err(DataError::Config(format!("hash_bits = {hash_bits} is above 64")));
        }
        let Opened { file, header, data_start, totals } = Opened::open(path)?;
        // SAFETY: Starling replaces a cache only by renaming a finished file over it, which leaves
        // this inode and its bytes as they were, and every length read from the map is checked
        // against the size it had when opened. What the map cannot guard against: another program
        // changing or truncating the file in place while it is read (bytes may change under a
        // check, or the read faults with SIGBUS), and an I/O error of the file system, which also
        // arrives as SIGBUS rather than an error. Caches belong in a local directory of their own.
        let map = unsafe { Mmap::map(file.get_ref()) }.map_err(|e| DataError::io(path, e))?;
        if map.len() as u64 != totals.bytes {
            return Err(DataError::CacheTruncated {
                path: path.to_path_buf(),
                offset: map.len() as u64,
                expected: format!("{} bytes, as when the cache was opened", totals.bytes),
            });
        }
        // Read once front to back: the kernel may read ahead further and drop pages behind.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(CacheReader {
            path: path.to_path_buf(),
            map,
            header,
            hash_bits,
            data_start,
            totals,
            offset: data_start,
            block: 0..0,
            block_start: data_start,
            pos: 0,
            examples: 0,
            features: 0,
            state: State::Reading,
            rank: 0,
            world: 1,
            block_index: 0,
        })
    }

    /// Reads only share `rank` of `world`: every `world`-th block from block `rank`, so threads
    /// split a cache as they split text files. The end block's totals cover the whole file, so
    /// only a reader of the whole file (`world = 1`) checks them; every block's CRC is still
    /// checked by the share that reads it.
    pub fn share(mut self, rank: usize, world: usize) -> Result<CacheReader, DataError> {
        if world == 0 || rank >= world {
            return Err(DataError::Config(format!("cache share {rank} of {world}: expected a rank below the count")));
        }
        (self.rank, self.world) = (rank, world);
        Ok(self)
    }

    /// The cache's header.
    pub fn header(&self) -> &CacheHeader {
        &self.header
    }

    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Examples and features in the whole cache (from its end block) and the file size.
    pub fn totals(&self) -> CacheStats {
        self.totals
    }

    /// Examples returned in this pass.
    pub fn examples_read(&self) -> u64 {
        self.examples
    }

    /// Starts another pass from the first example.
    pub fn rewind(&mut self) -> Result<(), DataError> {
        self.release_block();
        self.offset = self.data_start;
        self.pos = 0;
        self.examples = 0;
        self.features = 0;
        self.block_index = 0;
        self.state = State::Reading;
        Ok(())
    }

    /// Reads the next example into `ex` (reusing its allocation); `Ok(false)` after the last one,
    /// once the end block's totals have been checked.
    pub fn next(&mut self, ex: &mut Example) -> Result<bool, DataError> {
        loop {
            if self.pos < self.block.len() {
                let block = &self.map[self.block.clone()];
                return match decode(block, &mut self.pos, self.hash_bits, ex) {
                    Ok(()) => {
                        self.examples += 1;
                        self.features += ex.features.len() as u64;
                        Ok(true)
                    }
                    Err((at, expected)) => {
                        let e = self.corrupt(self.block_start + at as u64, expected.into_owned());
                        Err(self.stop(e))
                    }
                };
            }
            match self.state {
                State::Done => return Ok(false),
                State::Failed => return Err(self.corrupt(self.offset, "a rewind after the earlier error".into())),
                State::Reading => {
                    self.release_block();
                    self.read_block()?
                }
            }
        }
    }

    /// Ends the pass at error `e`: no example after a bad one can be trusted.
    fn stop(&mut self, e: DataError) -> DataError {
        self.state = State::Failed;
        self.release_block();
        e
    }

    /// Forgets the current block and hands its pages back to the page cache, so a pass over a
    /// large cache does not make the process resident in all of it.
    fn release_block(&mut self) {
        let block = std::mem::replace(&mut self.block, 0..0);
        self.pos = 0;
        // Whole pages inside the block only: the pages at its ends hold neighbours' bytes.
        let (start, end) = (block.start.next_multiple_of(PAGE), block.end & !(PAGE - 1));
        #[cfg(unix)]
        if end > start {
            // SAFETY: a read-only shared file mapping: dropping its pages only makes a later
            // access read them again from the file, which nothing here does for this block.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
        #[cfg(not(unix))]
        let _ = (start, end);
    }

    fn corrupt(&self, offset: u64, expected: String) -> DataError {
        DataError::CacheCorrupt { path: self.path.clone(), offset, expected }
    }

    /// The `len` bytes at the current offset, which then moves past them; the end of the file is
    /// a truncation.
    fn take(&mut self, len: usize, expected: &str) -> Result<Range<usize>, DataError> {
        let start = self.offset as usize;
        let Some(end) = start.checked_add(len).filter(|&e| e <= self.map.len()) else {
            let e =
                DataError::CacheTruncated { path: self.path.clone(), offset: self.offset, expected: expected.into() };
            return Err(self.stop(e));
        };
        self.offset = end as u64;
        Ok(start..end)
    }

    /// Loads and checks the next block, or reads the end block.
    fn read_block(&mut self) -> Result<(), DataError> {
        let at = self.offset;
        let range = self.take(8, "a block header or the end block")?;
        let head = &self.map[range];
        let (len, stored) = (le_u32(&head[..4]) as usize, le_u32(&head[4..]));
        if len == 0 {
            return self.read_end(at);
        }
        if len > MAX_BLOCK_SIZE {
            let e = self.corrupt(at, format!("a block length of at most {MAX_BLOCK_SIZE} bytes, found {len}"));
            return Err(self.stop(e));
        }
        // Checked before the payload is allocated: a corrupt length must not cost 64 MiB.
        let room = self.totals.bytes.saturating_sub(END_LEN).saturating_sub(at + 8);
        if len as u64 > room {
            let expected = format!("a block of {len} bytes, found {room} bytes before the end block");
            let e = DataError::CacheTruncated { path: self.path.clone(), offset: at, expected };
            return Err(self.stop(e));
        }
        let index = self.block_index;
        self.block_index += 1;
        if index % self.world != self.rank {
            // Another share's block: skipped unread (its reader checks it).
            self.offset += len as u64;
            return Ok(());
        }
        let block = self.take(len, "a block payload")?;
        let computed = crc32fast::hash(&self.map[block.clone()]);
        self.block = block;
        if computed != stored {
            let e = DataError::CacheChecksum { path: self.path.clone(), offset: at, what: "block", stored, computed };
            return Err(self.stop(e));
        }
        self.block_start = at + 8;
        self.pos = 0;
        Ok(())
    }

    /// Checks the end block at `at` (its marker already read) against what this pass read.
    fn read_end(&mut self, at: u64) -> Result<(), DataError> {
        // The 4 bytes after the marker were taken as a block CRC: the counts start there.
        self.offset = at + 4;
        let range = self.take(END_LEN as usize - 4, "the end block's counts")?;
        let mut end = [0u8; END_LEN as usize - 4];
        end.copy_from_slice(&self.map[range]);
        let (stored, computed) = (le_u32(&end[16..]), crc32fast::hash(&end[..16]));
        if stored != computed {
            let e =
                DataError::CacheChecksum { path: self.path.clone(), offset: at, what: "end block", stored, computed };
            return Err(self.stop(e));
        }
        let (examples, features) = (le_u64(&end[..8]), le_u64(&end[8..16]));
        if self.world == 1 && (examples, features) != (self.examples, self.features) {
            let expected = format!(
                "{examples} examples with {features} features as the end block says, read {} with {}",
                self.examples, self.features
            );
            let e = self.corrupt(at, expected);
            return Err(self.stop(e));
        }
        if self.offset != self.totals.bytes {
            let e = self.corrupt(self.offset, "the end of the file after the end block".into());
            return Err(self.stop(e));
        }
        self.state = State::Done;
        Ok(())
    }
}

/// Decodes the example at `buf[*pos..]` into `ex`; on error, the offset in `buf` and what was
/// expected there.
fn decode(buf: &[u8], pos: &mut usize, bits: u32, ex: &mut Example) -> Result<(), (usize, Cow<'static, str>)> {
    let head_at = *pos;
    let head = varint(buf, pos)?;
    ex.label = f32_at(buf, pos, "a label")?;
    ex.weight = if head & 1 == 1 { f32_at(buf, pos, "a weight")? } else { 1.0 };
    ex.features.clear();
    let n = head >> 1;
    let left = buf.len() - *pos;
    if n > (left / MIN_FEATURE_LEN) as u64 {
        return Err((
            head_at,
            format!("an example whose {n} features fit in the {left} bytes left in its block").into(),
        ));
    }
    ex.features.reserve(n as usize);
    let mask = fold_mask(bits);
    for _ in 0..n {
        let key = match buf.get(*pos..*pos + 8) {
            Some(b) => le_u64(b),
            None => return Err((*pos, "a feature key".into())),
        };
        *pos += 8;
        let tag_at = *pos;
        // Fields below 64 without a value, the common case, take one byte.
        let tag = match buf.get(*pos) {
            Some(&b) if b < 0x80 => {
                *pos += 1;
                u64::from(b)
            }
            _ => varint(buf, pos)?,
        };
        let Ok(field) = u32::try_from(tag >> 1) else {
            return Err((tag_at, "a field index below 2^32".into()));
        };
        let value = if tag & 1 == 1 { f32_at(buf, pos, "a feature value")? } else { 1.0 };
        ex.features.push(Feature { key: key & mask, value, field });
    }
    Ok(())
}

fn f32_at(buf: &[u8], pos: &mut usize, what: &'static str) -> Result<f32, (usize, Cow<'static, str>)> {
    let b = buf.get(*pos..*pos + 4).ok_or((*pos, Cow::Borrowed(what)))?;
    *pos += 4;
    Ok(f32::from_bits(le_u32(b)))
}

/// LEB128: 7 bits a byte, low first, at most 10 bytes for 64 bits.
fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, (usize, Cow<'static, str>)> {
    let start = *pos;
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let Some(&b) = buf.get(*pos) else { return Err((start, "a varint before the end of the block".into())) };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err((start, "a varint of at most 64 bits".into()));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}
