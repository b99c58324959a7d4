//! Number parsing on bytes.
//!
//! [`parse_f32`] has a fast path for plain decimals (`1`, `-1`, `0.693147`, `.5`) whose digits fit
//! in 24 bits and that have at most 10 fraction digits: both the mantissa and the power of ten are
//! then exact in `f32`, so one division is correctly rounded (Clinger's fast path). Everything
//! else (exponents, long mantissas, `inf`) goes to `str::parse::<f32>`. Non-finite values are
//! rejected: a NaN or infinite feature value would poison a model.

/// Powers of ten exactly representable in `f32`.
const POW10_F32: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Parses a finite `f32`; `None` for anything else (empty, garbage, NaN, infinities).
#[inline]
pub fn parse_f32(s: &[u8]) -> Option<f32> {
    let mut i = 0;
    match parse_f32_prefix(s, &mut i) {
        Some(v) if i == s.len() => Some(v),
        _ => parse_f32_slow(s),
    }
}

/// Accumulates the decimal digits at `s[*i..]` into `acc` (wrapping; callers bound the count),
/// leaves `*i` at the first non-digit and returns how many digits it read.
#[inline(always)]
pub fn scan_digits(s: &[u8], i: &mut usize, acc: &mut u64) -> usize {
    let start = *i;
    while *i < s.len() {
        let d = s[*i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        *acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
        *i += 1;
    }
    *i - start
}

/// Fast-path decimal at `s[*i..]`, stopping at the first byte that cannot continue it (`*i` is
/// left there). `None` when the number is not a plain short decimal; the caller then falls back
/// to [`parse_f32`] on the whole token. Never returns a wrong value.
#[inline(always)]
pub fn parse_f32_prefix(s: &[u8], i: &mut usize) -> Option<f32> {
    let n = s.len();
    let mut j = *i;
    let neg = j < n && s[j] == b'-';
    if j < n && (s[j] == b'-' || s[j] == b'+') {
        j += 1;
    }
    let mut mant: u64 = 0;
    let mut digits = scan_digits(s, &mut j, &mut mant);
    let mut frac = 0usize;
    if j < n && s[j] == b'.' {
        j += 1;
        frac = scan_digits(s, &mut j, &mut mant);
        digits += frac;
    }
    if digits == 0 || digits > 19 || mant >= (1 << 24) || frac > 10 {
        return None;
    }
    // An exponent or other continuation is not ours to judge.
    if j < n && matches!(s[j], b'e' | b'E' | b'.') {
        return None;
    }
    *i = j;
    let v = mant as f32 / POW10_F32[frac];
    Some(if neg { -v } else { v })
}

#[cold]
fn parse_f32_slow(s: &[u8]) -> Option<f32> {
    let t = std::str::from_utf8(s).ok()?;
    let v: f32 = t.parse().ok()?;
    if v.is_finite() {
        Some(v)
    } else {
        None
    }
}

/// Parses a non-negative decimal integer that fits `u64`.
#[inline]
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Parses a non-negative decimal integer that fits `u32`.
#[inline]
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_matches_std() {
        for s in [
            "0",
            "1",
            "-1",
            "+1",
            "0.693147",
            "0.3651",
            "0.50000",
            "12345",
            "1234567",
            "-0.5",
            ".5",
            "5.",
            "3.14159",
            "0.1",
            "0.2",
            "0.3",
            "9999999",
            "0.0000001",
            "1.000000",
        ] {
            let want: f32 = s.parse().unwrap();
            assert_eq!(parse_f32(s.as_bytes()), Some(want), "{s}");
        }
    }

    #[test]
    fn slow_path_and_rejects() {
        for s in ["1e-3", "2.5E+2", "123456789", "0.123456789012", "1e30", "-7.25e-5"] {
            let want: f32 = s.parse().unwrap();
            assert_eq!(parse_f32(s.as_bytes()), Some(want), "{s}");
        }
        for s in ["", "-", "+", ".", "abc", "1.2.3", "nan", "NaN", "inf", "-inf", "1e99", "1x", "--1", "0x10"] {
            assert_eq!(parse_f32(s.as_bytes()), None, "{s}");
        }
        // Random digit strings agree with std exactly.
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20000 {
            x = starling_core::hash::mix64(x);
            let int = x % 100_000;
            let fracd = (x >> 20) % 9;
            let fracv = (x >> 30) % 10u64.pow(fracd as u32);
            let s =
                if fracd == 0 { format!("{int}") } else { format!("{int}.{fracv:0width$}", width = fracd as usize) };
            let want: f32 = s.parse().unwrap();
            assert_eq!(parse_f32(s.as_bytes()), Some(want), "{s}");
        }
    }

    #[test]
    fn prefix_parse() {
        let mut i = 2;
        assert_eq!(parse_f32_prefix(b"3:0.25 x", &mut i), Some(0.25));
        assert_eq!(i, 6);
        for bad in ["1e5", "", "-", "1.2.3", "123456789"] {
            let mut i = 0;
            assert_eq!(parse_f32_prefix(bad.as_bytes(), &mut i), None, "{bad}");
            assert_eq!(i, 0);
        }
        let mut i = 0;
        assert_eq!(parse_f32_prefix(b"-7|", &mut i), Some(-7.0));
        assert_eq!(i, 2);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"17"), Some(17));
    }
}
