//! The hidden true model and the row sampler of the synthetic CTR data.
//!
//! A port of `gen_ctr.py`'s `Spec` / `gen_chunk` with the same parameters: per-field Zipf
//! vocabularies, lognormal counts, a linear part and a rank-4 pairwise term over 12 fields.
//! The hidden weight "tables" (2^22 slots, as in the Python generator) are not stored: the weight of
//! slot `h` is a normal variate derived from a hash of `(seed, h)`, which is exactly as random as a
//! table filled from a generator, costs no memory and no start-up time.

use starling_core::hash::mix64;
use starling_core::rng::Rng;

/// Integer count columns I1..I13.
pub const N_INT: usize = 13;
/// Categorical columns C1..C26.
pub const N_CAT: usize = 26;
/// Criteo Kaggle cardinalities, clamped to `[10, 1e6]` below.
const CRITEO_CARD: [u64; N_CAT] = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992, 5461306, 10, 5652,
    2173, 4, 7046547, 18, 15, 286181, 105, 142572,
];
/// Categorical fields (0-based) in the hidden pairwise interaction: C1 C2 C5 C6 C8 C11 | C14 C17 C18
/// C20 C22 C25, so it spans VW namespaces `a` (C1..C13) and `b` (C14..C26).
pub const INTER_FIELDS: [usize; 12] = [0, 1, 4, 5, 7, 10, 13, 16, 17, 19, 21, 24];
/// Rank of the hidden pairwise term.
pub const LATENT_K: usize = 4;
/// Slots of the hidden weight tables (as in gen_ctr.py).
pub const HIDDEN_TABLE_BITS: u32 = 22;
/// Scale of the pairwise term.
pub const INTER_GAIN: f64 = 0.08;
/// Bias of the hidden model.
pub const BIAS: f64 = -1.25;
/// Categorical fields (0-based) of the optional non-linear term: C6 C17 C23, small vocabularies
/// (24, 10, 15 values) that are never missing, so the term is learnable.
pub const NONLINEAR_FIELDS: [usize; 3] = [5, 16, 22];
/// Share of missing values per categorical field (Criteo-like; fields not listed are never missing).
const CAT_MISSING: [(usize, f64); 10] = [
    (2, 0.03),
    (3, 0.03),
    (11, 0.03),
    (15, 0.03),
    (18, 0.44),
    (19, 0.44),
    (20, 0.03),
    (21, 0.76),
    (24, 0.44),
    (25, 0.44),
];

/// Vocabulary size of categorical field `f`.
pub fn vocab(f: usize) -> u64 {
    CRITEO_CARD[f].clamp(10, 1_000_000)
}

/// 32-bit token (written as 8 hex digits) of rank `rank` (0-based) of field `f`.
#[inline]
pub fn token_of(f: usize, rank: u64) -> u32 {
    (mix64(rank.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add((f as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)))
        >> 32) as u32
}

/// 64-bit hash of (field, token): the hidden-table slot and the LibSVM id derive from it.
#[inline]
pub fn feat_hash(f: usize, tok: u32) -> u64 {
    mix64(u64::from(tok) ^ (f as u64 + 101).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

/// Two independent standard normals from 64 random bits (Box–Muller on the two 32-bit halves).
#[inline]
fn gauss2(bits: u64) -> (f64, f64) {
    const INV32: f64 = 1.0 / 4_294_967_296.0;
    let u1 = ((bits >> 32) as f64 + 0.5) * INV32;
    let u2 = (bits & 0xFFFF_FFFF) as f64 * INV32;
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Exact Zipf sampler on ranks `1..=n` with `p(k) ~ k^-s` (rejection-inversion, Hörmann and
/// Derflinger 1996, as in Apache Commons RNG): O(1) memory and time, no CDF table.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    thresh: f64,
}

impl Zipf {
    /// A sampler over `1..=n` (`n >= 1`) with exponent `s > 0`.
    pub fn new(n: u64, s: f64) -> Self {
        let mut z = Zipf { n: n as f64, s, h_x1: 0.0, h_n: 0.0, thresh: 0.0 };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(n as f64 + 0.5);
        z.thresh = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// One rank in `1..=n`.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.next_f64() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.thresh || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    #[inline]
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    #[inline]
    fn h_integral(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper2((1.0 - self.s) * lx) * lx
    }

    #[inline]
    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
#[inline]
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(exp(x) - 1) / x`, accurate near 0.
#[inline]
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// The generating parameters, all drawn from the seed (same ranges as gen_ctr.py).
#[derive(Clone, Debug)]
pub struct Spec {
    pub zipf_s: [f64; N_CAT],
    pub cat_missing: [f64; N_CAT],
    pub cat_scale: [f64; N_CAT],
    pub int_mu: [f64; N_INT],
    pub int_sigma: [f64; N_INT],
    pub int_missing: [f64; N_INT],
    pub int_w: [f64; N_INT],
    zipf: Vec<Zipf>,
    is_inter: [bool; N_CAT],
    w_salt: u64,
    v_salt: [u64; 2],
    /// Drawn after everything else, so data without the non-linear term stays as it was.
    nl_salt: u64,
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

impl Spec {
    /// The parameters of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(mix64(seed ^ 0x5EED_0000_0000_00C7));
        let zipf_s: [f64; N_CAT] = std::array::from_fn(|_| uniform(&mut rng, 1.05, 1.35));
        let mut cat_missing = [0.0; N_CAT];
        for &(f, p) in &CAT_MISSING {
            cat_missing[f] = p;
        }
        let cat_scale = std::array::from_fn(|_| uniform(&mut rng, 0.035, 0.385));
        let int_mu = std::array::from_fn(|_| uniform(&mut rng, 0.0, 3.0));
        let int_sigma = std::array::from_fn(|_| uniform(&mut rng, 0.5, 1.8));
        const MISS_CHOICES: [f64; 5] = [0.0, 0.0, 0.02, 0.2, 0.45];
        let int_missing = std::array::from_fn(|_| MISS_CHOICES[rng.below(5) as usize]);
        let int_w = std::array::from_fn(|_| 0.12 * rng.normal());
        let zipf = (0..N_CAT).map(|f| Zipf::new(vocab(f), zipf_s[f])).collect();
        let mut is_inter = [false; N_CAT];
        for &f in &INTER_FIELDS {
            is_inter[f] = true;
        }
        let w_salt = rng.next_u64();
        let v_salt = [rng.next_u64(), rng.next_u64()];
        let nl_salt = rng.next_u64();
        Spec {
            zipf_s,
            cat_missing,
            cat_scale,
            int_mu,
            int_sigma,
            int_missing,
            int_w,
            zipf,
            is_inter,
            w_salt,
            v_salt,
            nl_salt,
        }
    }

    /// Hidden linear weight of table slot `h` (standard normal).
    #[inline]
    fn weight(&self, h: u64) -> f64 {
        gauss2(mix64(h ^ self.w_salt)).0
    }

    /// Hidden latent vector of table slot `h` (standard normal entries).
    #[inline]
    fn latent(&self, h: u64) -> [f64; LATENT_K] {
        let (a, b) = gauss2(mix64(h ^ self.v_salt[0]));
        let (c, d) = gauss2(mix64(h ^ self.v_salt[1]));
        [a, b, c, d]
    }

    /// Draws the next row from `rng` into `row`; `nonlinear` scales the term no second-order
    /// model can represent (0: none, and the rows are those of earlier versions).
    pub fn sample_row(&self, rng: &mut Rng, row: &mut Row, cache: &mut WeightCache, nonlinear: f64) {
        let mut zlin = BIAS;
        for f in 0..N_INT {
            let v = ((self.int_mu[f] + self.int_sigma[f] * rng.normal()).exp() - 0.5).floor().max(0.0);
            // saturate absurd tails (never reached with these parameters) instead of wrapping
            let v = v.min(1e15) as i64;
            if rng.next_f64() < self.int_missing[f] {
                row.ints[f] = -1;
            } else {
                row.ints[f] = v;
                zlin += self.int_w[f] * ((v as f64).ln_1p() - self.int_mu[f]);
            }
        }
        let hmask = (1u64 << HIDDEN_TABLE_BITS) - 1;
        let mut vsum = [0.0f64; LATENT_K];
        let mut vsq = 0.0f64;
        row.cmiss = 0;
        for f in 0..N_CAT {
            let rank = self.zipf[f].sample(rng) - 1;
            let tok = token_of(f, rank);
            row.toks[f] = tok;
            if rng.next_f64() < self.cat_missing[f] {
                row.cmiss |= 1 << f;
                continue;
            }
            let h = feat_hash(f, tok) & hmask;
            let slot = &mut cache.0[(h & CACHE_MASK) as usize];
            if slot.tag != h + 1 {
                *slot = CacheSlot { tag: h + 1, w: self.weight(h), v: self.latent(h) };
            }
            zlin += self.cat_scale[f] * slot.w;
            if self.is_inter[f] {
                let v = slot.v;
                for j in 0..LATENT_K {
                    vsum[j] += v[j];
                    vsq += v[j] * v[j];
                }
            }
        }
        let zint = INTER_GAIN * 0.5 * (vsum.iter().map(|x| x * x).sum::<f64>() - vsq);
        // The parity of three fields: each token has a hidden sign, and the term is their
        // product, a pure third-order interaction whose pairwise projections are zero, so FM
        // cannot fit any of it; an MLP over the embeddings can.
        let znl = if nonlinear == 0.0 {
            0.0
        } else {
            let signs = NONLINEAR_FIELDS.iter().map(|&f| {
                let bits = mix64((feat_hash(f, row.toks[f]) & hmask) ^ self.nl_salt);
                if bits & 1 == 0 {
                    1.0
                } else {
                    -1.0
                }
            });
            nonlinear * signs.product::<f64>()
        };
        row.zlin = zlin;
        row.z = zlin + zint + znl;
        row.p = 1.0 / (1.0 + (-row.z).exp());
        row.label = rng.next_f64() < row.p;
    }
}

const CACHE_BITS: u32 = 14;
const CACHE_MASK: u64 = (1 << CACHE_BITS) - 1;

#[derive(Clone, Copy, Default)]
struct CacheSlot {
    /// slot + 1 (0 = empty)
    tag: u64,
    w: f64,
    v: [f64; LATENT_K],
}

/// Direct-mapped memo of hidden weights (values are identical to recomputing them; the Zipf
/// head makes most lookups hits).
pub struct WeightCache(Vec<CacheSlot>);

impl Default for WeightCache {
    fn default() -> Self {
        WeightCache(vec![CacheSlot::default(); 1 << CACHE_BITS])
    }
}

/// One generated row.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub label: bool,
    /// Counts; -1 = missing.
    pub ints: [i64; N_INT],
    /// Category tokens (meaningless where `cmiss` has the field's bit).
    pub toks: [u32; N_CAT],
    /// Bit `f` set = categorical field `f` missing.
    pub cmiss: u32,
    /// Logit of the true model, its linear part only, and the true probability.
    pub z: f64,
    pub zlin: f64,
    pub p: f64,
}

impl Row {
    /// Is categorical field `f` missing?
    #[inline]
    pub fn cat_missing(&self, f: usize) -> bool {
        self.cmiss & (1 << f) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_matches_power_law() {
        // n = 10, s = 1.2: compare empirical frequencies with the exact pmf
        let (n, s) = (10u64, 1.2f64);
        let z = Zipf::new(n, s);
        let mut rng = Rng::new(3);
        let draws = 200_000;
        let mut cnt = vec![0u64; n as usize + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k));
            cnt[k as usize] += 1;
        }
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in 1..=n {
            let want = (k as f64).powf(-s) / norm;
            let got = cnt[k as usize] as f64 / draws as f64;
            assert!((got - want).abs() < 0.005, "k={k} got {got} want {want}");
        }
        // a huge vocabulary still stays in range
        let big = Zipf::new(1_000_000, 1.05);
        assert!((0..10_000).all(|_| (1..=1_000_000).contains(&big.sample(&mut rng))));
    }

    #[test]
    fn gauss2_is_standard_normal() {
        let (mut s1, mut s2) = (0.0, 0.0);
        let n = 50_000u64;
        for i in 0..n {
            let (a, b) = gauss2(mix64(i));
            s1 += a + b;
            s2 += a * a + b * b;
        }
        let m = s1 / (2 * n) as f64;
        let v = s2 / (2 * n) as f64 - m * m;
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "mean {m} var {v}");
    }
}
