//! Line formats. Each parser turns one line (bytes, without its line terminator) into calls on a
//! [`RawSink`]; the feature pipeline is the sink that hashes them into an `Example`.
//!
//! Parsers never allocate on a good line and never panic on any input; a bad line gives a
//! [`LineError`] with the 1-based column (token) and what was expected there.

use std::borrow::Cow;

pub mod criteo;
pub mod csv;
pub mod libffm;
pub mod libsvm;
pub mod num;
pub mod vw;

pub use criteo::CriteoParser;
pub use csv::CsvParser;
pub use libffm::LibFfmParser;
pub use libsvm::LibSvmParser;
pub use vw::VwParser;

/// Receives what a parser finds on a line, before hashing.
pub trait RawSink {
    /// The example's label (as written; the pipeline maps it to 0/1 when asked).
    fn label(&mut self, label: f32);
    /// The example's importance weight.
    fn weight(&mut self, w: f32);
    /// An integer id with a value (LibSVM index, libFFM index).
    fn id(&mut self, field: u32, id: u64, value: f32);
    /// A string token with a value (categorical value, VW feature name).
    fn token(&mut self, field: u32, token: &[u8], value: f32);
    /// A numeric column's value (Criteo integer columns, CSV numeric columns).
    fn number(&mut self, field: u32, x: f32);
}

/// Why one line could not be parsed; the reader adds the file and line number.
#[derive(Clone, Debug, PartialEq)]
pub struct LineError {
    /// 1-based column (whitespace token, or delimited column for TSV/CSV).
    pub column: usize,
    /// What the parser expected there.
    pub expected: Cow<'static, str>,
    /// What it found, lossily decoded and truncated.
    pub got: String,
}

/// Longest `got` text kept in an error.
const MAX_GOT: usize = 60;

impl LineError {
    /// An error at `column` about the bytes `got`.
    pub fn new(column: usize, expected: impl Into<Cow<'static, str>>, got: &[u8]) -> Self {
        LineError { column, expected: expected.into(), got: printable(got, MAX_GOT) }
    }
}

/// Input bytes as they may appear in a message: text as it is; quotes, backslashes and control
/// characters escaped (`\"`, `\u{1b}`), bytes that are not UTF-8 as `\xff`; cut after `max`
/// bytes with `...`. What a user's file holds never reaches a terminal raw.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let (cut, ellipsis) = if bytes.len() > max { (&bytes[..max], "...") } else { (bytes, "") };
    let mut out = String::with_capacity(cut.len() + 3);
    for chunk in cut.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str(ellipsis);
    out
}

/// Where `bytes` (the start of a file) show it is not text: the offset of the first NUL byte,
/// which no text format here contains.
pub fn binary_at(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// A record sink that does nothing; handy for validating or scanning input.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl RawSink for NullSink {
    fn label(&mut self, _: f32) {}
    fn weight(&mut self, _: f32) {}
    fn id(&mut self, _: u32, _: u64, _: f32) {}
    fn token(&mut self, _: u32, _: &[u8], _: f32) {}
    fn number(&mut self, _: u32, _: f32) {}
}

/// Class bit of the whitespace between tokens of LibSVM, libFFM and VW lines.
pub(crate) const SPACE: u8 = 1;
/// Class bit of `|` (VW's namespace mark).
pub(crate) const BAR: u8 = 2;
/// Class bit of `:` (before a value).
pub(crate) const COLON: u8 = 4;

/// The class bits of every byte: a token scan tests one table entry per byte instead of a
/// chain of comparisons.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\r' as usize] = SPACE;
    t[0x0b] = SPACE;
    t[0x0c] = SPACE;
    t[b'|' as usize] = BAR;
    t[b':' as usize] = COLON;
    t
};

/// Whether `b` has any of the class bits in `mask`.
#[inline(always)]
pub(crate) fn is_class(b: u8, mask: u8) -> bool {
    CLASS[b as usize] & mask != 0
}

/// Whitespace between tokens of LibSVM, libFFM and VW lines.
#[inline(always)]
pub(crate) fn is_space(b: u8) -> bool {
    is_class(b, SPACE)
}

/// The first position at or after `i` whose byte has a class bit in `mask`, or `line.len()`.
#[inline(always)]
pub(crate) fn scan_to(line: &[u8], mut i: usize, mask: u8) -> usize {
    while i < line.len() && !is_class(line[i], mask) {
        i += 1;
    }
    i
}

/// Next whitespace-separated token of `line` at or after `*pos`, as a byte range.
#[inline(always)]
pub(crate) fn next_token(line: &[u8], pos: &mut usize) -> Option<(usize, usize)> {
    let n = line.len();
    let mut i = *pos;
    while i < n && is_space(line[i]) {
        i += 1;
    }
    if i >= n {
        *pos = n;
        return None;
    }
    let s = i;
    while i < n && !is_space(line[i]) {
        i += 1;
    }
    *pos = i;
    Some((s, i))
}

/// Position of the first `b` in `s`.
#[inline(always)]
pub(crate) fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// `s` without leading and trailing ASCII spaces and tabs.
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_space(s[a]) {
        a += 1;
    }
    while b > a && is_space(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::RawSink;

    /// A sink that records everything as readable events.
    #[derive(Debug, Default, PartialEq)]
    pub struct Rec {
        pub label: Option<f32>,
        pub weight: Option<f32>,
        pub events: Vec<String>,
    }

    impl RawSink for Rec {
        fn label(&mut self, l: f32) {
            self.label = Some(l);
        }
        fn weight(&mut self, w: f32) {
            self.weight = Some(w);
        }
        fn id(&mut self, f: u32, id: u64, v: f32) {
            self.events.push(format!("id {f} {id} {v}"));
        }
        fn token(&mut self, f: u32, t: &[u8], v: f32) {
            self.events.push(format!("tok {f} {} {v}", String::from_utf8_lossy(t)));
        }
        fn number(&mut self, f: u32, x: f32) {
            self.events.push(format!("num {f} {x}"));
        }
    }
}
