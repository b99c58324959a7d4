//! From user paths to work: expanding directories, cutting the input into byte-range splits,
//! giving each worker its splits, and reading the lines of one split.
//!
//! Split semantics: a line belongs to the split that holds its **first byte**. A reader of the
//! split `[start, end)` with `start > 0` skips the partial line before its first line start, and
//! reads every line that starts before `end`, including the last one that runs past `end`. So
//! every line is read exactly once whatever the cut points (like Hadoop's `TextInputFormat`).
//! Gzip files (detected by their magic bytes `1f 8b`) cannot be cut and are always one split.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::DataError;

/// Read buffer size for input files.
const BUF_SIZE: usize = 256 * 1024;

/// Expands user paths into the list of input files.
///
/// Files are taken as given. A directory contributes its regular files, sorted by name, not
/// recursively, skipping hidden and bookkeeping files (names starting with `.` or `_`, such as
/// `_SUCCESS`, and `*.crc` checksums written by Hadoop and Spark). A path that does not exist is
/// an error naming it; so is an input that expands to no file.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for p in paths {
        if is_url(p) {
            out.extend(stage_url(p)?);
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataError::NotFound { path: p.clone() }
            } else {
                DataError::io(p, e)
            }
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(p).map_err(|e| DataError::io(p, e))? {
                let entry = entry.map_err(|e| DataError::io(p, e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !is_data_file_name(&name) {
                    continue;
                }
                let path = entry.path();
                // Follow symlinks; skip subdirectories and anything that is not a file.
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => files.push(path),
                    _ => {}
                }
            }
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(DataError::NoInput {
            paths: if names.is_empty() { "(no paths)".into() } else { names.join(", ") },
        });
    }
    Ok(out)
}

/// True when the file starts with the gzip magic bytes `1f 8b`.
pub fn is_gzip(path: &Path) -> Result<bool, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match f.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(got == 2 && magic == [0x1f, 0x8b])
}

/// A byte range `[start, end)` of one input file; it owns the lines that start inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// The file.
    pub path: PathBuf,
    /// First byte offset.
    pub start: u64,
    /// One past the last byte offset (the file size for a whole file, also for `.gz` files).
    pub end: u64,
}

impl Split {
    /// A split covering all of `path`.
    pub fn whole(path: &Path) -> Result<Split, DataError> {
        let len = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
        Ok(Split { path: path.to_path_buf(), start: 0, end: len })
    }

    /// Bytes covered (compressed bytes for gzip files).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the split covers no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Divides the files into about `n` splits of similar byte size (at least one per non-empty file).
///
/// Plain files larger than `total / n` are cut into several byte ranges; gzip files are never cut.
/// Empty files give no split. The result is deterministic: the same files and `n` give the same
/// splits on every worker.
pub fn make_splits(files: &[PathBuf], n: usize) -> Result<Vec<Split>, DataError> {
    let n = n.max(1) as u64;
    let mut sized = Vec::with_capacity(files.len());
    for f in files {
        let len = std::fs::metadata(f).map_err(|e| DataError::io(f, e))?.len();
        let gz = len >= 2 && is_gzip(f)?;
        sized.push((f, len, gz));
    }
    let total: u64 = sized.iter().map(|s| s.1).sum();
    let target = total.div_ceil(n).max(1);
    let mut out = Vec::new();
    for (f, len, gz) in sized {
        if len == 0 {
            continue;
        }
        let pieces = if gz { 1 } else { len.div_ceil(target).max(1) };
        for i in 0..pieces {
            let start = len * i / pieces;
            let end = len * (i + 1) / pieces;
            if end > start {
                out.push(Split { path: f.clone(), start, end });
            }
        }
    }
    Ok(out)
}

/// The splits that worker `rank` of `world` reads: a deterministic greedy balance of bytes
/// (largest split first to the least-loaded worker, ties to the lowest rank), returned in input
/// order. Every split goes to exactly one worker; all workers compute the same assignment.
pub fn assign_splits(splits: &[Split], rank: usize, world: usize) -> Vec<Split> {
    assign_by_size(splits, Split::len, rank, world)
}

/// The items worker `rank` of `world` gets when `items` are balanced by `size` as
/// [`assign_splits`] balances splits.
pub fn assign_by_size<T: Clone>(items: &[T], size: impl Fn(&T) -> u64, rank: usize, world: usize) -> Vec<T> {
    let world = world.max(1);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| size(&items[b]).cmp(&size(&items[a])).then(a.cmp(&b)));
    let mut load = vec![0u64; world];
    let mut owner = vec![0usize; items.len()];
    for i in order {
        let w = (0..world).min_by_key(|&w| (load[w], w)).unwrap_or(0);
        load[w] += size(&items[i]).max(1);
        owner[i] = w;
    }
    items.iter().zip(owner).filter(|(_, o)| *o == rank).map(|(s, _)| s.clone()).collect()
}

/// Whether a file name is data rather than bookkeeping: not hidden (`.`), not Hadoop's or
/// Spark's (`_SUCCESS`, `_temporary`), not a `.crc` checksum.
pub fn is_data_file_name(name: &str) -> bool {
    !(name.starts_with('.') || name.starts_with('_') || name.ends_with(".crc"))
}

/// Whether `p` is a URL with a scheme (`s3://bucket/key`) rather than a local path.
pub use starling_fs::remote::is_url_path as is_url;

/// The local copies of the data files at URL `p` (see [`crate::remote`]).
#[cfg(feature = "object-store")]
fn stage_url(p: &Path) -> Result<Vec<PathBuf>, DataError> {
    crate::remote::stage(&p.to_string_lossy(), &crate::remote::staging_dir())
}

#[cfg(not(feature = "object-store"))]
fn stage_url(p: &Path) -> Result<Vec<PathBuf>, DataError> {
    Err(DataError::Config(format!(
        "{}: object store URLs need Starling built with the `object-store` feature (cargo build --release -p starling --features object-store)",
        p.display()
    )))
}

/// Opens `path` for reading, transparently decompressing gzip (multi-member) streams.
pub fn open_reader(path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let gz = is_gzip(path)?;
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(if gz {
        Box::new(BufReader::with_capacity(BUF_SIZE, MultiGzDecoder::new(BufReader::with_capacity(BUF_SIZE, f))))
    } else {
        Box::new(BufReader::with_capacity(BUF_SIZE, f))
    })
}

/// The first line of a file (a CSV header), without its line terminator and UTF-8 byte-order mark.
pub fn read_header(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = open_reader(path)?;
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))?;
    buf.truncate(content_len(&buf));
    if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
        buf.drain(..3);
    }
    Ok(buf)
}

/// `r.fill_buf()`, retried when a signal interrupts the read (as `read_until` does).
#[inline]
fn fill_buf(r: &mut (dyn BufRead + Send)) -> std::io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Re-borrowed so the loop's earlier borrow ends: a classic NLL limitation.
            Ok(_) => return r.fill_buf(),
            Err(e) => return Err(e),
        }
    }
}

/// Length of `line` without its trailing `\n` and `\r` bytes.
#[inline]
fn content_len(line: &[u8]) -> usize {
    let mut n = line.len();
    while n > 0 && matches!(line[n - 1], b'\n' | b'\r') {
        n -= 1;
    }
    n
}

/// Whether `line` holds only spaces and tabs (or nothing): such lines are skipped.
#[inline]
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b' ' || b == b'\t' || b == b'\r')
}

/// The lines of one split, one reused buffer, with file:line positions for error messages.
///
/// Lines are returned without their `\n` or `\r\n`; blank (whitespace-only) lines are skipped; a
/// missing final newline is fine.
pub struct LineSource {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    /// Offset of the next unread byte (in the decompressed stream for gzip).
    pos: u64,
    /// Lines starting at or after this offset belong to the next split (`u64::MAX` for gzip).
    end: u64,
    /// Offset where this split's first line starts.
    first_line_pos: u64,
    /// Lines consumed since `first_line_pos` (including blank and header lines).
    lines_read: u64,
    /// Number of lines before `first_line_pos`, computed lazily for splits with `start > 0`.
    base_line: Option<u64>,
    done: bool,
    /// Bytes of the reader's buffer returned as the last line, consumed on the next call.
    pending: usize,
}

impl LineSource {
    /// Opens `split`; with `skip_header`, the file's first line (a CSV header) is not returned.
    pub fn open(split: &Split, skip_header: bool) -> Result<LineSource, DataError> {
        let path = split.path.clone();
        let gz = is_gzip(&path)?;
        let mut src = if gz {
            if split.start > 0 {
                return Err(DataError::Config(format!(
                    "{}: a gzip file cannot be read from offset {}; it must be one whole split",
                    path.display(),
                    split.start
                )));
            }
            LineSource {
                reader: open_reader(&path)?,
                path,
                buf: Vec::with_capacity(4096),
                pos: 0,
                end: u64::MAX,
                first_line_pos: 0,
                lines_read: 0,
                base_line: Some(0),
                done: false,
                pending: 0,
            }
        } else {
            let mut f = File::open(&path).map_err(|e| DataError::io(&path, e))?;
            let seek_to = split.start.saturating_sub(1);
            if seek_to > 0 {
                f.seek(SeekFrom::Start(seek_to)).map_err(|e| DataError::io(&path, e))?;
            }
            LineSource {
                reader: Box::new(BufReader::with_capacity(BUF_SIZE, f)),
                path,
                buf: Vec::with_capacity(4096),
                pos: seek_to,
                end: split.end,
                first_line_pos: 0,
                lines_read: 0,
                base_line: if split.start == 0 { Some(0) } else { None },
                done: false,
                pending: 0,
            }
        };
        if split.start > 0 && !gz {
            // Discard through the first '\n' at or after start-1: the rest of a line owned by the
            // previous split (or just the '\n' ending it, when a line starts exactly at `start`).
            src.buf.clear();
            let k = src.reader.read_until(b'\n', &mut src.buf).map_err(|e| DataError::io(&src.path, e))?;
            src.pos += k as u64;
            if k == 0 {
                src.done = true;
            }
        }
        src.first_line_pos = src.pos;
        if skip_header && src.first_line_pos == 0 && !src.done {
            src.buf.clear();
            let k = src.reader.read_until(b'\n', &mut src.buf).map_err(|e| DataError::io(&src.path, e))?;
            src.pos += k as u64;
            if k > 0 {
                src.lines_read = 1;
            }
        }
        Ok(src)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next non-blank line of the split, or `None` at its end.
    ///
    /// A line that lies whole in the reader's buffer is returned in place, found by a `memchr`
    /// scan, and consumed on the next call; only a line cut by the buffer's end is copied.
    #[inline]
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, DataError> {
        loop {
            self.reader.consume(std::mem::take(&mut self.pending));
            if self.done || self.pos >= self.end {
                self.done = true;
                return Ok(None);
            }
            let avail = fill_buf(&mut *self.reader).map_err(|e| DataError::io(&self.path, e))?;
            if avail.is_empty() {
                self.done = true;
                return Ok(None);
            }
            self.lines_read += 1;
            if let Some(nl) = memchr::memchr(b'\n', avail) {
                let n = content_len(&avail[..nl]);
                let blank = is_blank(&avail[..n]);
                self.pending = nl + 1;
                self.pos += nl as u64 + 1;
                if blank {
                    continue;
                }
                // The same bytes again: a buffer that is not empty is returned without reading.
                let avail = fill_buf(&mut *self.reader).map_err(|e| DataError::io(&self.path, e))?;
                return Ok(Some(&avail[..n]));
            }
            // The line runs past the buffer (or is the last, unterminated one): copied.
            self.buf.clear();
            let k = self.reader.read_until(b'\n', &mut self.buf).map_err(|e| DataError::io(&self.path, e))?;
            self.pos += k as u64;
            self.buf.truncate(content_len(&self.buf));
            if is_blank(&self.buf) {
                continue;
            }
            return Ok(Some(&self.buf));
        }
    }

    /// 1-based line number (in the whole file) of the line last returned by [`next_line`].
    ///
    /// For a split that starts inside the file, the lines before it are counted on first use
    /// (a pass over the preceding bytes), so only error reports pay for it.
    ///
    /// [`next_line`]: LineSource::next_line
    pub fn line_number(&mut self) -> Result<u64, DataError> {
        let base = match self.base_line {
            Some(b) => b,
            None => {
                let b = count_newlines(&self.path, self.first_line_pos)?;
                self.base_line = Some(b);
                b
            }
        };
        Ok(base + self.lines_read)
    }
}

/// Number of `\n` bytes in the first `upto` bytes of a plain file.
fn count_newlines(path: &Path, upto: u64) -> Result<u64, DataError> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut r = f.take(upto);
    let mut buf = vec![0u8; 1 << 20];
    let mut count = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, e)),
        };
        count += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    use crate::tests::{gz, write};

    /// All (line number, line) pairs of all splits, in order.
    fn read_all(splits: &[Split], skip_header: bool) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for s in splits {
            let mut src = LineSource::open(s, skip_header).unwrap();
            while let Some(l) = src.next_line().unwrap() {
                let l = String::from_utf8(l.to_vec()).unwrap();
                out.push((src.line_number().unwrap(), l));
            }
        }
        out
    }

    #[test]
    fn expand_skips_bookkeeping_files() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("part");
        std::fs::create_dir(&sub).unwrap();
        write(&sub, "part-00001", b"1\n");
        write(&sub, "part-00000", b"1\n");
        write(&sub, "_SUCCESS", b"");
        write(&sub, ".part-00000.crc", b"x");
        write(&sub, "part-00000.crc", b"x");
        std::fs::create_dir(sub.join("nested")).unwrap();
        let single = write(d.path(), "single.txt", b"1\n");
        let got = expand_inputs(&[sub.clone(), single.clone()]).unwrap();
        assert_eq!(got, vec![sub.join("part-00000"), sub.join("part-00001"), single]);

        let missing = d.path().join("nope.libsvm");
        let e = expand_inputs(&[missing.clone()]).unwrap_err();
        assert!(e.to_string().contains("nope.libsvm"), "{e}");
        assert!(matches!(e, DataError::NotFound { .. }));

        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(&empty, "_SUCCESS", b"");
        let e = expand_inputs(&[empty]).unwrap_err();
        assert!(matches!(e, DataError::NoInput { .. }), "{e}");
        assert!(e.to_string().contains("empty"));
    }

    #[test]
    fn splits_read_every_line_once() {
        let d = tempfile::tempdir().unwrap();
        // Lines of varied length, CRLF in one file, blank lines, no final newline.
        let mut a = String::new();
        for i in 0..200 {
            a.push_str(&format!("a{i} {}\n", "x".repeat(i % 13)));
            if i % 37 == 0 {
                a.push('\n');
            }
        }
        let mut b = String::new();
        for i in 0..57 {
            b.push_str(&format!("b{i}{}\r\n", "y".repeat(i % 5)));
        }
        b.push_str("blast");
        let fa = write(d.path(), "a.txt", a.as_bytes());
        let fb = write(d.path(), "b.txt", b.as_bytes());
        let fc = write(d.path(), "c.txt.gz", &gz(b"c0\nc1\r\n\nc2"));
        let fe = write(d.path(), "e.txt", b"");
        let files = vec![fa.clone(), fb, fc, fe];
        let whole = read_all(&files.iter().map(|f| Split::whole(f).unwrap()).collect::<Vec<_>>(), false);
        assert_eq!(whole.len(), 200 + 58 + 3);
        assert_eq!(whole[200], (1, "b0".to_string()));
        assert_eq!(whole[257], (58, "blast".to_string()));
        assert_eq!(whole[260], (4, "c2".to_string()));
        // Line numbers count blank lines.
        assert_eq!(whole[1], (3, "a1 x".to_string()));
        for n in 1..=7 {
            let splits = make_splits(&files, n).unwrap();
            assert!(splits.len() >= n.min(3), "{n}: {splits:?}");
            assert_eq!(read_all(&splits, false), whole, "n = {n}");
        }
        // Tiny splits: many cut points right at and around line boundaries.
        for n in [50, 333, 5000] {
            let splits = make_splits(&files, n).unwrap();
            assert_eq!(read_all(&splits, false), whole, "n = {n}");
        }
        // Gzip is never cut.
        let splits = make_splits(&files, 1000).unwrap();
        assert_eq!(splits.iter().filter(|s| s.path.ends_with("c.txt.gz")).count(), 1);
    }

    #[test]
    fn header_skipped_only_in_first_split() {
        let d = tempfile::tempdir().unwrap();
        let mut s = String::from("\u{feff}h1,h2\r\n");
        for i in 0..100 {
            s.push_str(&format!("{i},{}\r\n", i * 7));
        }
        let f = write(d.path(), "x.csv", s.as_bytes());
        let g = write(d.path(), "x.csv.bin", &gz(s.as_bytes()));
        assert_eq!(read_header(&f).unwrap(), b"h1,h2");
        assert_eq!(read_header(&g).unwrap(), b"h1,h2");
        for n in 1..=7 {
            let splits = make_splits(&[f.clone(), g.clone()], n).unwrap();
            let got = read_all(&splits, true);
            assert_eq!(got.len(), 200);
            assert_eq!(got[0], (2, "0,0".to_string()));
            assert_eq!(got[199], (101, "99,693".to_string()));
        }
    }

    #[test]
    fn assignment_partitions_splits() {
        let splits: Vec<Split> = (0..23)
            .map(|i| Split { path: PathBuf::from(format!("f{}", i % 4)), start: i * 10, end: i * 10 + 5 + i % 7 })
            .collect();
        for world in 1..6 {
            let mut all: Vec<Split> = (0..world).flat_map(|r| assign_splits(&splits, r, world)).collect();
            all.sort_by_key(|s| (s.start, s.path.clone()));
            assert_eq!(all, splits, "world {world}");
            let loads: Vec<u64> =
                (0..world).map(|r| assign_splits(&splits, r, world).iter().map(Split::len).sum()).collect();
            let (mn, mx) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(mx - mn <= 11, "{loads:?}");
        }
    }
}
