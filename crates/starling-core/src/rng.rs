//! A small seeded generator, so results depend only on the seed and not on a crate's version.

use crate::hash::mix64;

/// splitmix64 generator: tiny, fast, and statistically good enough for init and shuffling.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: mix64(seed ^ 0x5DEE_CE66_D1CE_5EED) }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A deterministic value in `[-1, 1)` for slot `j` of the row of `key`: initialisation that does
/// not depend on the order rows are first touched (so threads and shards agree).
#[inline]
pub fn unit_for(seed: u64, key: u64, j: usize) -> f32 {
    let h = mix64(mix64(key ^ seed) ^ (j as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    ((h >> 40) as f32) * (2.0 / (1u64 << 24) as f32) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn unit_for_is_in_range_and_centred() {
        let mut sum = 0.0f64;
        for k in 0..10_000u64 {
            let v = unit_for(1, k, 3);
            assert!((-1.0..1.0).contains(&v));
            sum += f64::from(v);
        }
        assert!((sum / 10_000.0).abs() < 0.05);
    }

    #[test]
    fn below_stays_below() {
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }
}
