//! Vowpal Wabbit text: `label [importance [base]] ['tag] |ns[:scale] f[:v] f2 |ns2 ...`.
//!
//! * label: a finite number (`-1`/`+1`, `0`/`1`, or real); a line without one is an error;
//! * importance: the second number before the first `|`, a non-negative weight; a third number
//!   (VW's "base") is accepted and ignored; a `'tag` (or a non-numeric last token before `|`) is
//!   ignored;
//! * `|ns[:scale]` opens a namespace; `|` followed by whitespace is the default namespace `' '`;
//!   a namespace's *field* is chosen by its first byte, as VW's `-q`/`--interactions` do;
//! * feature `name[:value]` becomes `token(field, name, value * scale)`; a missing value is 1.
//!   A purely numeric name (`|a 123`) is hashed as the string, unlike VW, which uses it as an index.
//!
//! Not supported: multi-line (`--csoaa_ldf`) examples, cost-sensitive labels (`1:0.5`).

use super::num::{parse_f32, parse_f32_prefix};
use super::{find_byte, is_class, is_space, next_token, scan_to, LineError, RawSink, BAR, COLON, SPACE};

/// Marks a namespace byte that has no field.
const NONE: u32 = u32::MAX;

/// Parser of VW text lines.
#[derive(Clone, Debug)]
pub struct VwParser {
    /// Field of each namespace first byte, or `NONE`.
    map: Box<[u32; 256]>,
    /// The configured namespaces (empty: one field per byte value).
    namespaces: Vec<u8>,
}

/// Display name of a namespace byte: the character for printable ASCII and space, `\xNN` otherwise.
pub fn namespace_name(b: u8) -> String {
    if b == b' ' || b.is_ascii_graphic() {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

impl VwParser {
    /// A parser whose fields are the bytes of `namespaces` in order (empty: field = the byte value,
    /// 256 fields). Namespaces must be distinct ASCII characters.
    pub fn new(namespaces: &str) -> Result<Self, String> {
        let mut map = Box::new([NONE; 256]);
        let bytes = namespaces.as_bytes().to_vec();
        if bytes.is_empty() {
            for (i, m) in map.iter_mut().enumerate() {
                *m = i as u32;
            }
        } else {
            for (i, &b) in bytes.iter().enumerate() {
                if !b.is_ascii() {
                    return Err(format!("namespaces {namespaces:?}: only ASCII characters can name namespaces"));
                }
                if map[b as usize] != NONE {
                    return Err(format!("namespaces {namespaces:?}: {:?} appears twice", b as char));
                }
                map[b as usize] = i as u32;
            }
        }
        Ok(VwParser { map, namespaces: bytes })
    }

    /// Number of fields: the configured namespaces, or 256.
    pub fn num_fields(&self) -> usize {
        if self.namespaces.is_empty() {
            256
        } else {
            self.namespaces.len()
        }
    }

    /// Field names in field order (see [`namespace_name`]).
    pub fn field_names(&self) -> Vec<String> {
        if self.namespaces.is_empty() {
            (0..=255u8).map(namespace_name).collect()
        } else {
            self.namespaces.iter().map(|&b| namespace_name(b)).collect()
        }
    }

    /// Parses `line` into `sink`; `Ok(false)` for a blank line.
    #[inline]
    pub fn parse<S: RawSink>(&self, line: &[u8], sink: &mut S) -> Result<bool, LineError> {
        let Some(bar) = find_byte(line, b'|') else {
            if line.iter().all(|&b| is_space(b)) {
                return Ok(false);
            }
            return Err(LineError::new(1, "a label and '|' before the features", line));
        };
        // Label section.
        let head = &line[..bar];
        let mut pos = 0;
        let mut col = 0usize;
        let Some((s, e)) = next_token(head, &mut pos) else {
            return Err(LineError::new(1, "a label before '|'", line));
        };
        col += 1;
        let label = parse_f32(&head[s..e]).ok_or_else(|| LineError::new(1, "a label (a number)", &head[s..e]))?;
        sink.label(label);
        let mut numbers = 0;
        let mut tagged = false;
        while let Some((s, e)) = next_token(head, &mut pos) {
            col += 1;
            let tok = &head[s..e];
            if tagged {
                return Err(LineError::new(col, "'|' after the tag", tok));
            }
            if tok[0] == b'\'' {
                tagged = true;
                continue;
            }
            if numbers < 2 {
                if let Some(v) = parse_f32(tok) {
                    if numbers == 0 {
                        if v < 0.0 {
                            return Err(LineError::new(col, "a non-negative importance weight", tok));
                        }
                        sink.weight(v);
                    }
                    numbers += 1;
                    continue;
                }
            }
            // A non-numeric token is the tag, but only as the last token before '|'.
            let mut p2 = pos;
            if next_token(head, &mut p2).is_some() {
                return Err(LineError::new(col, "an importance weight, a 'tag or '|'", tok));
            }
            tagged = true;
        }
        // Features.
        let n = line.len();
        let mut i = bar;
        let mut field = NONE;
        let mut scale = 1.0f32;
        loop {
            while i < n && is_space(line[i]) {
                i += 1;
            }
            if i >= n {
                break;
            }
            col += 1;
            if line[i] == b'|' {
                let s = i;
                i += 1;
                i = scan_to(line, i, SPACE | BAR);
                let ns = &line[s + 1..i];
                let (name, sc) = match find_byte(ns, b':') {
                    Some(c) => {
                        let sc = parse_f32(&ns[c + 1..])
                            .ok_or_else(|| LineError::new(col, "a number after the namespace's ':'", &line[s..i]))?;
                        (&ns[..c], sc)
                    }
                    None => (ns, 1.0),
                };
                let first = name.first().copied().unwrap_or(b' ');
                field = self.map[first as usize];
                if field == NONE {
                    return Err(LineError::new(
                        col,
                        format!(
                            "a namespace whose first character is in namespaces = {:?}",
                            String::from_utf8_lossy(&self.namespaces)
                        ),
                        &line[s..i],
                    ));
                }
                scale = sc;
            } else {
                let s = i;
                i = scan_to(line, i, SPACE | BAR | COLON);
                let name = &line[s..i];
                let v = if i < n && line[i] == b':' {
                    let vs = i + 1;
                    let mut j = vs;
                    match parse_f32_prefix(line, &mut j) {
                        Some(v) if j >= n || is_class(line[j], SPACE | BAR) => {
                            i = j;
                            v
                        }
                        _ => {
                            let e = scan_to(line, vs, SPACE | BAR);
                            i = e;
                            parse_f32(&line[vs..e])
                                .ok_or_else(|| LineError::new(col, "a number after ':'", &line[s..e]))?
                        }
                    }
                } else {
                    1.0
                };
                if name.is_empty() {
                    return Err(LineError::new(col, "a feature name before ':'", &line[s..i]));
                }
                sink.token(field, name, v * scale);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rec;
    use super::*;

    fn p(ns: &str, line: &str) -> Result<Rec, LineError> {
        let mut r = Rec::default();
        VwParser::new(ns).unwrap().parse(line.as_bytes(), &mut r).map(|_| r)
    }

    #[test]
    fn good_lines() {
        let r = p("", "1 2.5 'tag|user a b:0.5 |item:2 x:3 123 | d").unwrap();
        assert_eq!(r.label, Some(1.0));
        assert_eq!(r.weight, Some(2.5));
        assert_eq!(r.events, ["tok 117 a 1", "tok 117 b 0.5", "tok 105 x 6", "tok 105 123 2", "tok 32 d 1"]);
        let r = p("ui ", "-1 |u a|i b").unwrap();
        assert_eq!(r.label, Some(-1.0));
        assert_eq!(r.weight, None);
        assert_eq!(r.events, ["tok 0 a 1", "tok 1 b 1"]);
        let r = p(" ", "0 1 0.5 tag| f").unwrap();
        assert_eq!(r.weight, Some(1.0));
        assert_eq!(r.events, ["tok 0 f 1"]);
        let r = p("", "1 |").unwrap();
        assert!(r.events.is_empty());
        let mut r = Rec::default();
        assert_eq!(VwParser::new("").unwrap().parse(b"   ", &mut r), Ok(false));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(p("", "| a b").unwrap_err().column, 1);
        assert_eq!(p("", "1 a b").unwrap_err().column, 1);
        assert_eq!(p("", "x | a").unwrap_err().column, 1);
        let e = p("", "1 |a b:x").unwrap_err();
        assert_eq!((e.column, &*e.expected, &*e.got), (3, "a number after ':'", "b:x"));
        let e = p("ab", "1 |a x |c y").unwrap_err();
        assert_eq!((e.column, e.got.as_str()), (4, "|c"));
        assert!(e.expected.contains("namespaces"));
        assert_eq!(p("", "1 -2 |a x").unwrap_err().column, 2);
        assert_eq!(p("", "1 tag 2 |a x").unwrap_err().column, 2);
        assert_eq!(p("", "1 |a:z x").unwrap_err().column, 2);
        assert_eq!(p("", "1 |a :3").unwrap_err().column, 3);
        assert!(VwParser::new("aa").is_err());
        assert!(VwParser::new("é").is_err());
    }
}
