//! libFFM: `label field:idx:val field:idx:val ...`.
//!
//! `field` is a non-negative integer below `num_fields` (when known), `idx` a non-negative 64-bit
//! integer, `val` a finite number; each feature becomes `id(field, idx, val)`. `#` starts a comment.

use super::num::{parse_f32, parse_u32, parse_u64};
use super::{find_byte, next_token, LineError, RawSink};

/// Parser of libFFM lines.
#[derive(Clone, Debug, Default)]
pub struct LibFfmParser {
    /// Fields must be below this; `None` accepts any `u32` field (used when scanning).
    pub num_fields: Option<u32>,
}

impl LibFfmParser {
    /// A parser that rejects fields `>= num_fields`.
    pub fn new(num_fields: Option<u32>) -> Self {
        LibFfmParser { num_fields }
    }

    /// Parses `line` into `sink`; `Ok(false)` when the line holds no example (comment only).
    #[inline]
    pub fn parse<S: RawSink>(&self, line: &[u8], sink: &mut S) -> Result<bool, LineError> {
        let line = match find_byte(line, b'#') {
            Some(p) => &line[..p],
            None => line,
        };
        let mut pos = 0;
        let Some((s, e)) = next_token(line, &mut pos) else {
            return Ok(false);
        };
        let tok = &line[s..e];
        let label = parse_f32(tok).ok_or_else(|| LineError::new(1, "a label (a number)", tok))?;
        sink.label(label);
        let mut col = 1;
        while let Some((s, e)) = next_token(line, &mut pos) {
            col += 1;
            let tok = &line[s..e];
            let Some(c1) = find_byte(tok, b':') else {
                return Err(LineError::new(col, "field:index:value", tok));
            };
            let Some(c2) = find_byte(&tok[c1 + 1..], b':').map(|p| p + c1 + 1) else {
                return Err(LineError::new(col, "field:index:value", tok));
            };
            let field = parse_u32(&tok[..c1])
                .ok_or_else(|| LineError::new(col, "a non-negative integer field before the first ':'", tok))?;
            if let Some(nf) = self.num_fields {
                if field >= nf {
                    return Err(LineError::new(
                        col,
                        format!("a field below num_fields = {nf} (raise num_fields in the config)"),
                        tok,
                    ));
                }
            }
            let idx = parse_u64(&tok[c1 + 1..c2])
                .ok_or_else(|| LineError::new(col, "a non-negative integer index between the ':'s", tok))?;
            let val =
                parse_f32(&tok[c2 + 1..]).ok_or_else(|| LineError::new(col, "a number after the second ':'", tok))?;
            sink.id(field, idx, val);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rec;
    use super::*;

    fn p(nf: Option<u32>, line: &str) -> Result<Rec, LineError> {
        let mut r = Rec::default();
        LibFfmParser::new(nf).parse(line.as_bytes(), &mut r).map(|_| r)
    }

    #[test]
    fn good_lines() {
        let r = p(Some(18), "1 0:0:0.3651 17:2434:0.50000 2:1163:1").unwrap();
        assert_eq!(r.label, Some(1.0));
        assert_eq!(r.events, ["id 0 0 0.3651", "id 17 2434 0.5", "id 2 1163 1"]);
        assert_eq!(p(None, "0 99:1:1").unwrap().events, ["id 99 1 1"]);
    }

    #[test]
    fn bad_lines() {
        let e = p(Some(4), "1 0:1:1 4:2:1").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(e.expected.contains("num_fields = 4"), "{e:?}");
        assert_eq!(p(None, "1 0:1").unwrap_err().column, 2);
        assert_eq!(p(None, "1 0:1:x").unwrap_err().expected, "a number after the second ':'");
        assert_eq!(p(None, "1 a:1:1").unwrap_err().column, 2);
        assert_eq!(p(None, "1 1:-1:1").unwrap_err().column, 2);
        assert_eq!(p(None, "x 1:1:1").unwrap_err().column, 1);
    }
}
