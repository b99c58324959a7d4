//! Fast text rendering of generated rows: integers, 8-hex-digit tokens and `%.6g` floats written
//! straight into a reused byte buffer, one line per row in each output format.

use super::model::{feat_hash, Row, N_CAT, N_INT};
use super::SynthFormat;

/// Appends the decimal form of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `v` as exactly 8 lowercase hex digits.
#[inline]
pub fn push_hex8(out: &mut Vec<u8>, v: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 8];
    for (i, d) in b.iter_mut().enumerate() {
        *d = HEX[((v >> (28 - 4 * i)) & 0xF) as usize];
    }
    out.extend_from_slice(&b);
}

/// Appends `x` formatted like C's `printf("%.6g", x)` (6 significant digits, trailing zeros
/// removed, exponent form below 1e-4 and from 1e6 on). Exact: the digits come from Rust's
/// correctly rounded `{:.5e}`.
pub fn push_g6(out: &mut Vec<u8>, x: f64) {
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    if !x.is_finite() {
        out.extend_from_slice(if x.is_nan() {
            b"nan"
        } else if x > 0.0 {
            b"inf"
        } else {
            b"-inf"
        });
        return;
    }
    let s = format!("{:.5e}", x);
    let (mant, exp) = s.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let neg = mant.starts_with('-');
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect(); // 6 digits
    let mut last = digits.len();
    while last > 1 && digits[last - 1] == b'0' {
        last -= 1;
    }
    let digits = &digits[..last];
    if neg {
        out.push(b'-');
    }
    if (-4..6).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-exp - 1) as usize, b'0');
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.resize(out.len() + int_len - digits.len(), b'0');
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        push_u64(out, u64::from(e));
    }
}

/// `log1p(v)` rounded to f32 (as gen_ctr.py stores it), the value of count `v` in LibSVM/libFFM/VW.
#[inline]
pub fn int_value(v: i64) -> f64 {
    f64::from((v as f64).ln_1p() as f32)
}

/// Counts below this have their `%.6g` text precomputed.
const CACHE_N: usize = 1 << 14;

/// Renders rows into per-format lines; holds the precomputed `%.6g` texts of `log1p(0..CACHE_N)`.
pub struct LineWriter {
    hash_span: u64,
    cache_text: Vec<u8>,
    cache_off: Vec<u32>,
    /// (id, value, field) scratch for LibSVM/libFFM.
    feats: Vec<(u64, u32, u8)>,
}

impl LineWriter {
    /// A writer for `hash_bits`-bit LibSVM/libFFM ids.
    pub fn new(hash_bits: u32) -> Self {
        let mut cache_text = Vec::with_capacity(CACHE_N * 9);
        let mut cache_off = Vec::with_capacity(CACHE_N + 1);
        cache_off.push(0);
        for v in 0..CACHE_N {
            push_g6(&mut cache_text, int_value(v as i64));
            cache_off.push(cache_text.len() as u32);
        }
        LineWriter { hash_span: (1u64 << hash_bits) - 14, cache_text, cache_off, feats: Vec::with_capacity(40) }
    }

    /// Appends `%.6g` of `log1p(v)` (`v >= 0`).
    #[inline]
    fn push_int_value(&self, out: &mut Vec<u8>, v: i64) {
        if (v as usize) < CACHE_N {
            let (a, b) = (self.cache_off[v as usize] as usize, self.cache_off[v as usize + 1] as usize);
            out.extend_from_slice(&self.cache_text[a..b]);
        } else {
            push_g6(out, int_value(v));
        }
    }

    /// LibSVM id of categorical field `f`'s token.
    #[inline]
    pub fn cat_id(&self, f: usize, tok: u32) -> u64 {
        14 + feat_hash(f, tok) % self.hash_span
    }

    /// Appends the line (with its `\n`) of `row` in `fmt`.
    pub fn write(&mut self, fmt: SynthFormat, row: &Row, out: &mut Vec<u8>) {
        match fmt {
            SynthFormat::Criteo => self.delimited(row, out, b'\t'),
            SynthFormat::Csv => self.delimited(row, out, b','),
            SynthFormat::Libsvm => self.libsvm(row, out),
            SynthFormat::Libffm => self.libffm(row, out),
            SynthFormat::Vw => self.vw(row, out),
        }
    }

    fn delimited(&self, row: &Row, out: &mut Vec<u8>, sep: u8) {
        out.push(if row.label { b'1' } else { b'0' });
        for &v in &row.ints {
            out.push(sep);
            if v >= 0 {
                push_u64(out, v as u64);
            }
        }
        for f in 0..N_CAT {
            out.push(sep);
            if !row.cat_missing(f) {
                push_hex8(out, row.toks[f]);
            }
        }
        out.push(b'\n');
    }

    /// Fills `self.feats` with (id, categorical count or u32::MAX for an int, field), sorted by id
    /// with duplicate ids merged (their counts summed).
    fn collect_ids(&mut self, row: &Row) {
        self.feats.clear();
        for f in 0..N_CAT {
            if !row.cat_missing(f) {
                self.feats.push((self.cat_id(f, row.toks[f]), 1, (N_INT + f) as u8));
            }
        }
        // ≤ 26 entries: insertion sort, stable, no allocation
        for i in 1..self.feats.len() {
            let mut j = i;
            while j > 0 && self.feats[j - 1].0 > self.feats[j].0 {
                self.feats.swap(j - 1, j);
                j -= 1;
            }
        }
        self.feats.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 += later.1;
                true
            } else {
                false
            }
        });
    }

    fn libsvm(&mut self, row: &Row, out: &mut Vec<u8>) {
        out.push(if row.label { b'1' } else { b'0' });
        for (f, &v) in row.ints.iter().enumerate() {
            if v >= 0 {
                out.push(b' ');
                push_u64(out, f as u64 + 1);
                out.push(b':');
                self.push_int_value(out, v);
            }
        }
        self.collect_ids(row);
        for &(id, n, _) in &self.feats {
            out.push(b' ');
            push_u64(out, id);
            out.push(b':');
            push_u64(out, u64::from(n));
        }
        out.push(b'\n');
    }

    /// libFFM: `label field:id:value`, in field (column) order; ids and values as in LibSVM.
    fn libffm(&mut self, row: &Row, out: &mut Vec<u8>) {
        out.push(if row.label { b'1' } else { b'0' });
        for (f, &v) in row.ints.iter().enumerate() {
            if v >= 0 {
                out.push(b' ');
                push_u64(out, f as u64);
                out.push(b':');
                push_u64(out, f as u64 + 1);
                out.push(b':');
                self.push_int_value(out, v);
            }
        }
        for f in 0..N_CAT {
            if !row.cat_missing(f) {
                out.push(b' ');
                push_u64(out, (N_INT + f) as u64);
                out.push(b':');
                push_u64(out, self.cat_id(f, row.toks[f]));
                out.extend_from_slice(b":1");
            }
        }
        out.push(b'\n');
    }

    /// VW text exactly as gen_ctr.py's `write_vw`: `1 |i I1:0.693147 ... |a c1=... |b c14=...`.
    fn vw(&self, row: &Row, out: &mut Vec<u8>) {
        out.extend_from_slice(if row.label { b"1 |i " } else { b"-1 |i " });
        let mut first = true;
        for (f, &v) in row.ints.iter().enumerate() {
            if v >= 0 {
                if !first {
                    out.push(b' ');
                }
                first = false;
                out.push(b'I');
                push_u64(out, f as u64 + 1);
                out.push(b':');
                self.push_int_value(out, v);
            }
        }
        for (ns, range) in [(b" |a ", 0..13), (b" |b ", 13..N_CAT)] {
            out.extend_from_slice(ns);
            let mut first = true;
            for f in range {
                if row.cat_missing(f) {
                    continue;
                }
                if !first {
                    out.push(b' ');
                }
                first = false;
                out.push(b'c');
                push_u64(out, f as u64 + 1);
                out.push(b'=');
                push_hex8(out, row.toks[f]);
            }
        }
        out.push(b'\n');
    }
}

/// The CSV header line.
pub fn csv_header() -> Vec<u8> {
    let mut h = b"Label".to_vec();
    for i in 1..=N_INT {
        h.extend_from_slice(format!(",I{i}").as_bytes());
    }
    for i in 1..=N_CAT {
        h.extend_from_slice(format!(",C{i}").as_bytes());
    }
    h.push(b'\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g6(x: f64) -> String {
        let mut v = Vec::new();
        push_g6(&mut v, x);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn g6_matches_printf() {
        // expected strings are C printf("%.6g") outputs
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (std::f64::consts::LN_2, "0.693147"),
            (2.5, "2.5"),
            (10.0, "10"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (-3.25, "-3.25"),
            (99999.95, "99999.9"),
            (999999.5, "1e+06"),
            (1e100, "1e+100"),
            (f64::from(std::f32::consts::LN_2), "0.693147"),
        ];
        for &(x, want) in cases {
            assert_eq!(g6(x), want, "x = {x}");
        }
    }

    #[test]
    fn ints_and_hex() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        v.push(b' ');
        push_hex8(&mut v, 0x0A1B_2C3D);
        v.push(b' ');
        push_hex8(&mut v, 7);
        assert_eq!(v, b"0 18446744073709551615 0a1b2c3d 00000007");
    }

    #[test]
    fn cached_int_values_equal_direct() {
        let lw = LineWriter::new(24);
        for v in [0i64, 1, 2, 7, 100, 16383, 16384, 1 << 20] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            lw.push_int_value(&mut a, v);
            push_g6(&mut b, int_value(v));
            assert_eq!(a, b);
        }
    }
}
