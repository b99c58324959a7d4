//! CSV with a header line. The delimiter is configurable (`,` by default, `\t` for TSV).
//!
//! Quoting: a cell that starts with `"` runs to the closing `"`; `""` inside it is one `"`; the
//! delimiter may appear inside quotes. A record must fit on one line (no newlines inside quotes).
//! Columns are mapped by header name to the label, an optional importance weight, numeric fields
//! (`number(field, x)`) and categorical fields (`token(field, cell, 1.0)`); other columns are
//! ignored. An empty cell is a missing value (no feature; weight 1).

use super::num::parse_f32;
use super::{trim, LineError, RawSink};

/// What a CSV column is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnRole {
    /// Not used.
    Ignore,
    /// The label.
    Label,
    /// The importance weight.
    Weight,
    /// A numeric feature of this field.
    Numeric(u32),
    /// A categorical feature of this field.
    Categorical(u32),
}

/// Splits one CSV line into cells (quotes removed, `""` unescaped).
pub fn split_line(line: &[u8], delimiter: u8) -> Result<Vec<Vec<u8>>, LineError> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut i = 0;
    let mut col = 0;
    loop {
        col += 1;
        let (cell, next, last) = next_cell(line, i, delimiter, col, &mut scratch)?;
        out.push(match cell {
            Cell::Line(a, b) => line[a..b].to_vec(),
            Cell::Scratch => scratch.clone(),
        });
        if last {
            return Ok(out);
        }
        i = next;
    }
}

/// Where a cell's bytes are.
enum Cell {
    /// `line[a..b]`.
    Line(usize, usize),
    /// The unescaped scratch buffer.
    Scratch,
}

/// Reads the cell starting at `i`: (cell, start of the next cell, whether it was the last).
#[inline(always)]
fn next_cell(
    line: &[u8],
    i: usize,
    delim: u8,
    col: usize,
    scratch: &mut Vec<u8>,
) -> Result<(Cell, usize, bool), LineError> {
    let n = line.len();
    if i < n && line[i] == b'"' {
        let mut j = i + 1;
        let mut escaped = false;
        let close = loop {
            match line[j..].iter().position(|&b| b == b'"') {
                None => return Err(LineError::new(col, "a closing '\"'", &line[i..])),
                Some(p) => {
                    let q = j + p;
                    if q + 1 < n && line[q + 1] == b'"' {
                        escaped = true;
                        j = q + 2;
                    } else {
                        break q;
                    }
                }
            }
        };
        let after = close + 1;
        let last = after >= n;
        if !last && line[after] != delim {
            return Err(LineError::new(col, "a delimiter after the closing '\"'", &line[i..]));
        }
        let cell = if escaped {
            scratch.clear();
            let body = &line[i + 1..close];
            let mut k = 0;
            while k < body.len() {
                scratch.push(body[k]);
                k += if body[k] == b'"' { 2 } else { 1 };
            }
            Cell::Scratch
        } else {
            Cell::Line(i + 1, close)
        };
        Ok((cell, after + 1, last))
    } else {
        match line[i.min(n)..].iter().position(|&b| b == delim) {
            Some(p) => Ok((Cell::Line(i, i + p), i + p + 1, false)),
            None => Ok((Cell::Line(i.min(n), n), n, true)),
        }
    }
}

/// Parser of CSV data lines, once the header has mapped columns to roles.
#[derive(Clone, Debug)]
pub struct CsvParser {
    delimiter: u8,
    roles: Vec<ColumnRole>,
    scratch: Vec<u8>,
}

impl CsvParser {
    /// A parser for lines with one cell per entry of `roles` (the header's columns).
    pub fn new(delimiter: u8, roles: Vec<ColumnRole>) -> Self {
        CsvParser { delimiter, roles, scratch: Vec::new() }
    }

    /// The role of each column.
    pub fn roles(&self) -> &[ColumnRole] {
        &self.roles
    }

    /// Parses `line` into `sink`.
    #[inline]
    pub fn parse<S: RawSink>(&mut self, line: &[u8], sink: &mut S) -> Result<bool, LineError> {
        let CsvParser { delimiter, roles, scratch } = self;
        let ncols = roles.len();
        let mut i = 0;
        let mut col = 0usize;
        loop {
            if col >= ncols {
                let found = split_line(line, *delimiter).map(|c| c.len()).unwrap_or(col + 1);
                return Err(LineError::new(
                    col + 1,
                    format!("{ncols} columns, as in the header"),
                    format!("{found} columns").as_bytes(),
                ));
            }
            col += 1;
            let (cell, next, last) = next_cell(line, i, *delimiter, col, scratch)?;
            let cell: &[u8] = match cell {
                Cell::Line(a, b) => &line[a..b],
                Cell::Scratch => scratch,
            };
            match roles[col - 1] {
                ColumnRole::Ignore => {}
                ColumnRole::Label => {
                    let l = parse_f32(trim(cell)).ok_or_else(|| LineError::new(col, "a label (a number)", cell))?;
                    sink.label(l);
                }
                ColumnRole::Weight => {
                    let c = trim(cell);
                    if !c.is_empty() {
                        match parse_f32(c) {
                            Some(w) if w >= 0.0 => sink.weight(w),
                            _ => return Err(LineError::new(col, "a non-negative weight (or an empty cell)", cell)),
                        }
                    }
                }
                ColumnRole::Numeric(f) => {
                    let c = trim(cell);
                    if !c.is_empty() {
                        let x = parse_f32(c).ok_or_else(|| LineError::new(col, "a number (or an empty cell)", cell))?;
                        sink.number(f, x);
                    }
                }
                ColumnRole::Categorical(f) => {
                    if !cell.is_empty() {
                        sink.token(f, cell, 1.0);
                    }
                }
            }
            if last {
                break;
            }
            i = next;
        }
        if col != ncols {
            return Err(LineError::new(
                col,
                format!("{ncols} columns, as in the header"),
                format!("{col} columns").as_bytes(),
            ));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rec;
    use super::*;
    use ColumnRole::*;

    #[test]
    fn split_and_quotes() {
        let cells = split_line(br#"a,"b,c","d""e",,"""#, b',').unwrap();
        assert_eq!(cells, vec![b"a".to_vec(), b"b,c".to_vec(), b"d\"e".to_vec(), vec![], vec![]]);
        assert_eq!(split_line(b"", b',').unwrap(), vec![Vec::<u8>::new()]);
        assert_eq!(split_line(b"x\ty", b'\t').unwrap().len(), 2);
        assert!(split_line(br#"a,"b"#, b',').is_err());
        assert!(split_line(br#"a,"b"c,d"#, b',').is_err());
    }

    #[test]
    fn parse_roles() {
        let mut p = CsvParser::new(b',', vec![Ignore, Label, Numeric(0), Categorical(1), Weight]);
        let mut r = Rec::default();
        assert_eq!(p.parse(br#"17,1,-2.5,"x""y",0.5"#, &mut r), Ok(true));
        assert_eq!(r.label, Some(1.0));
        assert_eq!(r.weight, Some(0.5));
        assert_eq!(r.events, ["num 0 -2.5", "tok 1 x\"y 1"]);
        let mut r = Rec::default();
        p.parse(b"17,0,,,", &mut r).unwrap();
        assert!(r.events.is_empty());
        assert_eq!(r.weight, None);
        let e = p.parse(b"17,0,x,,", &mut r).unwrap_err();
        assert_eq!((e.column, e.got.as_str()), (3, "x"));
        let e = p.parse(b"17,0,1,a", &mut r).unwrap_err();
        assert_eq!((e.column, e.got.as_str()), (4, "4 columns"));
        assert!(e.expected.starts_with("5 columns"));
        let e = p.parse(b"17,0,1,a,1,9", &mut r).unwrap_err();
        assert_eq!((e.column, e.got.as_str()), (6, "6 columns"));
        assert_eq!(p.parse(b"17,,1,a,1", &mut r).unwrap_err().column, 2);
        assert_eq!(p.parse(b"17,1,1,a,-1", &mut r).unwrap_err().column, 5);
    }
}
