//! LibSVM / SVMlight: `label idx:val idx:val ... [# comment]`.
//!
//! * label: any finite number (`0`/`1`, `-1`/`+1`, or a real target);
//! * `idx`: a non-negative integer (64-bit), hashed as `id(0, idx, val)`: everything is field 0;
//! * `val`: a finite number; a bare `idx` without `:val` means value 1 (as VW and SVMlight's
//!   binary shorthand read it);
//! * `qid:N` tokens (SVMrank) are skipped;
//! * `#` starts a comment to the end of the line; a line that is only a comment is skipped.

use super::num::{parse_f32, parse_f32_prefix, parse_u64, scan_digits};
use super::{find_byte, is_space, next_token, LineError, RawSink};

/// Parser of LibSVM lines (one field, number 0).
#[derive(Clone, Debug, Default)]
pub struct LibSvmParser;

impl LibSvmParser {
    /// Parses `line` into `sink`; `Ok(false)` when the line holds no example (comment only).
    #[inline]
    pub fn parse<S: RawSink>(&self, line: &[u8], sink: &mut S) -> Result<bool, LineError> {
        let n = line.len();
        let mut pos = 0;
        let Some((s, e)) = next_token(line, &mut pos) else {
            return Ok(false);
        };
        let mut tok = &line[s..e];
        let mut comment = false;
        if let Some(h) = find_byte(tok, b'#') {
            tok = &tok[..h];
            comment = true;
            if tok.is_empty() {
                return Ok(false);
            }
        }
        let label = parse_f32(tok).ok_or_else(|| LineError::new(1, "a label (a number)", tok))?;
        sink.label(label);
        let mut col = 1;
        while !comment {
            while pos < n && is_space(line[pos]) {
                pos += 1;
            }
            if pos >= n || line[pos] == b'#' {
                break;
            }
            col += 1;
            // Fast path: `digits:decimal` followed by whitespace or the end.
            let s = pos;
            let mut i = pos;
            let mut idx: u64 = 0;
            scan_digits(line, &mut i, &mut idx);
            if i > s && i - s <= 19 && i < n && line[i] == b':' {
                i += 1;
                if let Some(v) = parse_f32_prefix(line, &mut i) {
                    if i >= n || is_space(line[i]) {
                        sink.id(0, idx, v);
                        pos = i;
                        continue;
                    }
                }
            }
            // General path: the whole token.
            let mut e = s;
            while e < n && !is_space(line[e]) {
                e += 1;
            }
            pos = e;
            let mut tok = &line[s..e];
            if let Some(h) = find_byte(tok, b'#') {
                tok = &tok[..h];
                comment = true;
            }
            if !tok.is_empty() {
                token(tok, col, sink)?;
            }
        }
        Ok(true)
    }
}

/// One `idx[:val]` token (the general path).
#[inline(never)]
fn token<S: RawSink>(tok: &[u8], col: usize, sink: &mut S) -> Result<(), LineError> {
    match find_byte(tok, b':') {
        Some(c) => {
            let (k, v) = (&tok[..c], &tok[c + 1..]);
            let Some(idx) = parse_u64(k) else {
                if k == b"qid" {
                    return Ok(());
                }
                return Err(LineError::new(col, "a non-negative integer index before ':'", tok));
            };
            let val = parse_f32(v).ok_or_else(|| LineError::new(col, "a number after ':'", tok))?;
            sink.id(0, idx, val);
        }
        None => {
            let idx = parse_u64(tok)
                .ok_or_else(|| LineError::new(col, "index:value with a non-negative integer index", tok))?;
            sink.id(0, idx, 1.0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rec;
    use super::*;

    fn p(line: &str) -> Result<Rec, LineError> {
        let mut r = Rec::default();
        LibSvmParser.parse(line.as_bytes(), &mut r).map(|_| r)
    }

    #[test]
    fn good_lines() {
        let r = p("-1 3:1 11:0.5 14 qid:7 # c 1:2").unwrap();
        assert_eq!(r.label, Some(-1.0));
        assert_eq!(r.events, ["id 0 3 1", "id 0 11 0.5", "id 0 14 1"]);
        let r = p("1 3:1#x 4:1").unwrap();
        assert_eq!(r.events, ["id 0 3 1"]);
        let r = p("1 18446744073709551615:1 3:.5 4:-2 5:+1.25").unwrap();
        assert_eq!(r.events, ["id 0 18446744073709551615 1", "id 0 3 0.5", "id 0 4 -2", "id 0 5 1.25"]);
        assert_eq!(p("1#c 3:1").unwrap().events.len(), 0);
        let r = p("+1\t5:2.5e-1 ").unwrap();
        assert_eq!(r.label, Some(1.0));
        assert_eq!(r.events, ["id 0 5 0.25"]);
        assert_eq!(p("0.75").unwrap().events.len(), 0);
        let mut r = Rec::default();
        assert_eq!(LibSvmParser.parse(b"  # only a comment", &mut r), Ok(false));
    }

    #[test]
    fn bad_lines() {
        let e = p("1 3:1 7:abc").unwrap_err();
        assert_eq!((e.column, &*e.expected, &*e.got), (3, "a number after ':'", "7:abc"));
        let e = p("yes 3:1").unwrap_err();
        assert_eq!((e.column, &*e.expected), (1, "a label (a number)"));
        let e = p("1 -3:1").unwrap_err();
        assert_eq!(e.column, 2);
        assert!(e.expected.contains("index"));
        assert_eq!(p("1 3:").unwrap_err().column, 2);
        assert_eq!(p("1 :3").unwrap_err().column, 2);
        assert_eq!(p("1 3:nan").unwrap_err().column, 2);
        assert_eq!(p("1 2 x").unwrap_err().column, 3);
        assert_eq!(p("1 18446744073709551616:1").unwrap_err().column, 2);
        assert_eq!(p("1 3:1x").unwrap_err().column, 2);
        assert_eq!(p("1 3:1:2").unwrap_err().column, 2);
    }
}
