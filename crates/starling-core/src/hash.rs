//! Feature hashing: raw ids and tokens of a field to `u64` keys.
//!
//! Starling hashes with xxh3-64 (seeded by the field), not VW's MurmurHash3-x86_32: 64-bit keys keep
//! the table collisionless at billions of distinct ids, and xxh3 is several times faster on short
//! tokens. Folding into `2^b` buckets (`hash_bits`) is a separate, optional step.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// splitmix64 finaliser: a fast, well-mixed bijection on `u64`.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Seed that makes equal tokens of different fields hash apart.
#[inline]
fn field_seed(field: u32) -> u64 {
    mix64(u64::from(field).wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// Key of a string token (a categorical value, a VW feature name) in `field`.
#[inline]
pub fn hash_token(field: u32, token: &[u8]) -> u64 {
    xxh3_64_with_seed(token, field_seed(field))
}

/// Key of an integer id (a LibSVM or libFFM index, a numeric bucket) in `field`.
#[inline]
pub fn hash_id(field: u32, id: u64) -> u64 {
    mix64(id ^ field_seed(field))
}

/// Key of the cross (conjunction) of two keys, as VW `-q` builds quadratic features.
#[inline]
pub fn hash_cross(a: u64, b: u64) -> u64 {
    mix64(a.rotate_left(29) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

/// Folds a key into `2^bits` buckets; `bits == 0` keeps the full 64-bit key.
#[inline]
pub fn fold(key: u64, bits: u32) -> u64 {
    key & fold_mask(bits)
}

/// The mask [`fold`] applies: loops folding many keys compute it once.
#[inline]
pub fn fold_mask(bits: u32) -> u64 {
    if bits == 0 || bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_separate_equal_tokens() {
        assert_ne!(hash_token(0, b"abc"), hash_token(1, b"abc"));
        assert_ne!(hash_id(0, 5), hash_id(1, 5));
        assert_eq!(hash_token(3, b"abc"), hash_token(3, b"abc"));
    }

    #[test]
    fn fold_keeps_low_bits() {
        assert_eq!(fold(0xFFFF_FFFF, 8), 0xFF);
        assert_eq!(fold(12345, 0), 12345);
    }
}
