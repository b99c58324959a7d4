//! Criteo display-advertising TSV: `label \t I1..I13 \t C1..C26`, 40 tab-separated columns.
//!
//! * column 1: the label (a number, normally 0/1);
//! * columns 2..=14 (`I1..I13`, fields 0..=12): integer counts, may be negative (`-1`, `-2`);
//!   each becomes `number(field, x)` and the pipeline's numeric transform decides its key/value;
//! * columns 15..=40 (`C1..C26`, fields 13..=38): categorical hashes (hex strings); each becomes
//!   `token(field, bytes, 1.0)`;
//! * an empty column is a missing value and makes no feature.

use super::num::parse_f32;
use super::{trim, LineError, RawSink};

/// Number of integer columns.
pub const CRITEO_NUMERIC: usize = 13;
/// Number of categorical columns.
pub const CRITEO_CATEGORICAL: usize = 26;
/// Number of columns on a line (label + 13 + 26).
pub const CRITEO_COLUMNS: usize = 1 + CRITEO_NUMERIC + CRITEO_CATEGORICAL;

/// Field names `I1..I13, C1..C26` in field order.
pub fn criteo_field_names() -> Vec<String> {
    (1..=CRITEO_NUMERIC).map(|i| format!("I{i}")).chain((1..=CRITEO_CATEGORICAL).map(|i| format!("C{i}"))).collect()
}

/// Parser of Criteo TSV lines.
#[derive(Clone, Debug, Default)]
pub struct CriteoParser;

impl CriteoParser {
    /// Parses `line` into `sink`.
    #[inline]
    pub fn parse<S: RawSink>(&self, line: &[u8], sink: &mut S) -> Result<bool, LineError> {
        let mut col = 0usize; // 0-based column index
        let mut start = 0usize;
        let n = line.len();
        loop {
            let end = match line[start..].iter().position(|&b| b == b'\t') {
                Some(p) => start + p,
                None => n,
            };
            if col >= CRITEO_COLUMNS {
                return Err(too_many(line));
            }
            let cell = &line[start..end];
            if col == 0 {
                let c = trim(cell);
                let label = parse_f32(c).ok_or_else(|| LineError::new(1, "a label (a number)", cell))?;
                sink.label(label);
            } else if !cell.is_empty() {
                let field = (col - 1) as u32;
                if col <= CRITEO_NUMERIC {
                    let x = parse_f32(trim(cell))
                        .ok_or_else(|| LineError::new(col + 1, "an integer (or an empty cell)", cell))?;
                    sink.number(field, x);
                } else {
                    sink.token(field, cell, 1.0);
                }
            }
            col += 1;
            if end >= n {
                break;
            }
            start = end + 1;
        }
        if col != CRITEO_COLUMNS {
            return Err(LineError::new(
                col,
                format!("{CRITEO_COLUMNS} tab-separated columns (label, 13 integer, 26 categorical)"),
                format!("{col} columns").as_bytes(),
            ));
        }
        Ok(true)
    }
}

#[cold]
fn too_many(line: &[u8]) -> LineError {
    let cols = line.iter().filter(|&&b| b == b'\t').count() + 1;
    LineError::new(
        CRITEO_COLUMNS + 1,
        format!("{CRITEO_COLUMNS} tab-separated columns (label, 13 integer, 26 categorical)"),
        format!("{cols} columns").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rec;
    use super::*;

    fn line(label: &str, ints: &[&str], cats: &[&str]) -> String {
        let mut v = vec![label.to_string()];
        v.extend(ints.iter().map(|s| s.to_string()));
        v.extend(cats.iter().map(|s| s.to_string()));
        v.join("\t")
    }

    #[test]
    fn good_line() {
        let mut ints = vec![""; 13];
        ints[0] = "5";
        ints[2] = "-1";
        let mut cats = vec![""; 26];
        cats[0] = "68fd1e64";
        cats[25] = "9727dd16";
        let l = line("1", &ints, &cats);
        let mut r = Rec::default();
        assert_eq!(CriteoParser.parse(l.as_bytes(), &mut r), Ok(true));
        assert_eq!(r.label, Some(1.0));
        assert_eq!(r.events, ["num 0 5", "num 2 -1", "tok 13 68fd1e64 1", "tok 38 9727dd16 1"]);
        assert_eq!(criteo_field_names()[13], "C1");
        assert_eq!(criteo_field_names().len(), 39);
    }

    #[test]
    fn bad_lines() {
        let mut r = Rec::default();
        let e = CriteoParser.parse(b"1\t2\t3", &mut r).unwrap_err();
        assert!(e.expected.starts_with("40 tab-separated columns"), "{e:?}");
        assert_eq!(e.got, "3 columns");
        let long = line("0", &["1"; 13], &["a"; 27]);
        let e = CriteoParser.parse(long.as_bytes(), &mut r).unwrap_err();
        assert_eq!((e.column, e.got.as_str()), (41, "41 columns"));
        let mut ints = vec![""; 13];
        ints[4] = "x7";
        let bad = line("0", &ints, &[""; 26]);
        let e = CriteoParser.parse(bad.as_bytes(), &mut r).unwrap_err();
        assert_eq!(e.column, 6);
        let e = CriteoParser.parse(line("", &[""; 13], &[""; 26]).as_bytes(), &mut r).unwrap_err();
        assert_eq!(e.column, 1);
    }
}
