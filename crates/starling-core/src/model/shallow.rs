//! Models on gathered rows: LR, FM and FFM forward and backward.
//!
//! The functions here see only an example and the rows of its features, already gathered into one
//! flat slice, so the single-machine learner and the parameter-server worker run the same code:
//! they differ only in where the rows come from. Feature `i` of the example owns
//! `rows[i * stride .. i * stride + dim]`; anything after `dim` in a row (optimizer state) is ignored.
//!
//! Row layout: `[w]` for LR, `[w, v_0 .. v_k)` for FM and `[w, v_{field 0}, v_{field 1}, ..]` (one
//! k-vector per field it can interact with) for FFM. There is no global bias: the feature pipeline
//! adds a constant bias feature, which keeps every parameter in a table.

use serde::{Deserialize, Serialize};

pub use crate::error::ModelError;
use crate::example::Example;
use crate::rng::unit_for;

/// The shallow model families (the rows of one sparse table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShallowKind {
    /// Logistic (or linear) regression: one weight per key.
    Lr,
    /// Factorization machine of order 2 with latent dimension `k`.
    Fm,
    /// Field-aware factorization machine: one k-vector per (key, other field).
    Ffm,
}

impl std::fmt::Display for ShallowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ShallowKind {
    /// Name as written in configs, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ShallowKind::Lr => "lr",
            ShallowKind::Fm => "fm",
            ShallowKind::Ffm => "ffm",
        }
    }
}

/// Default latent dimension: small enough for huge vocabularies, large enough to help (libFM, xLearn use 4-8).
pub const DEFAULT_K: usize = 8;
/// Default latent init: uniform in `[-0.1, 0.1)`, near libFM's `init_stdev = 0.1`; zero would never break symmetry.
pub const DEFAULT_INIT_SCALE: f32 = 0.1;

/// Everything needed to shape and initialise rows of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSpec {
    /// Model family.
    pub kind: ShallowKind,
    /// Latent dimension (FM, FFM); ignored by LR.
    pub k: usize,
    /// Number of fields (FFM); ignored by LR and FM.
    pub num_fields: usize,
    /// Latent entries start uniform in `[-init_scale, init_scale)`.
    pub init_scale: f32,
    /// Seed of the latent init, so every shard and thread initialises a key alike.
    pub seed: u64,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec { kind: ShallowKind::Lr, k: DEFAULT_K, num_fields: 0, init_scale: DEFAULT_INIT_SCALE, seed: 0 }
    }
}

impl ModelSpec {
    /// Logistic/linear regression.
    pub fn lr() -> Self {
        ModelSpec { kind: ShallowKind::Lr, ..Default::default() }
    }

    /// Factorization machine with latent dimension `k`.
    pub fn fm(k: usize) -> Self {
        ModelSpec { kind: ShallowKind::Fm, k, ..Default::default() }
    }

    /// Field-aware FM with latent dimension `k` over `num_fields` fields.
    pub fn ffm(k: usize, num_fields: usize) -> Self {
        ModelSpec { kind: ShallowKind::Ffm, k, num_fields, ..Default::default() }
    }

    /// Weights per table row: LR 1; FM `1 + k`; FFM `1 + num_fields * k`.
    #[inline]
    pub fn dim(&self) -> usize {
        match self.kind {
            ShallowKind::Lr => 1,
            ShallowKind::Fm => 1 + self.k,
            ShallowKind::Ffm => 1 + self.num_fields * self.k,
        }
    }

    /// Checks the settings once so the hot path can trust them.
    pub fn validate(&self) -> Result<(), ModelError> {
        let kind = self.kind.name();
        match self.kind {
            ShallowKind::Lr => {}
            ShallowKind::Fm => {
                if self.k == 0 {
                    return Err(ModelError::ZeroK { kind });
                }
                if self.k.checked_add(1).is_none() {
                    return Err(ModelError::DimOverflow { k: self.k, num_fields: self.num_fields });
                }
            }
            ShallowKind::Ffm => {
                if self.k == 0 {
                    return Err(ModelError::ZeroK { kind });
                }
                if self.num_fields == 0 {
                    return Err(ModelError::ZeroFields);
                }
                if self.num_fields.checked_mul(self.k).and_then(|d| d.checked_add(1)).is_none() {
                    return Err(ModelError::DimOverflow { k: self.k, num_fields: self.num_fields });
                }
            }
        }
        if !self.init_scale.is_finite() {
            return Err(ModelError::BadInitScale(self.init_scale));
        }
        Ok(())
    }

    /// Checks that every feature's field has latent vectors (FFM); the pipeline calls this on
    /// untrusted input so that [`ModelSpec::forward`] may assume it.
    pub fn check_example(&self, ex: &Example) -> Result<(), ModelError> {
        if self.kind == ShallowKind::Ffm {
            if let Some(f) = ex.features.iter().find(|f| f.field as usize >= self.num_fields) {
                return Err(ModelError::FieldOutOfRange { field: f.field, num_fields: self.num_fields });
            }
        }
        Ok(())
    }

    /// Initial weights of the row of `key` (`w.len() == dim()`): linear weight 0, latent entries
    /// uniform and a pure function of (seed, key, slot) so init never depends on touch order.
    #[inline]
    pub fn init_weights(&self, key: u64, w: &mut [f32]) {
        debug_assert_eq!(w.len(), self.dim());
        let Some((lin, latent)) = w.split_first_mut() else { return };
        *lin = 0.0;
        if self.init_scale == 0.0 {
            latent.fill(0.0);
            return;
        }
        for (j, v) in latent.iter_mut().enumerate() {
            *v = self.init_scale * unit_for(self.seed, key, j + 1);
        }
    }

    /// True when every fresh row is all zeros, so a zeroed table needs no lazy init at all.
    #[inline]
    pub fn zero_init(&self) -> bool {
        self.kind == ShallowKind::Lr || self.init_scale == 0.0
    }

    /// Raw score of `ex` given its gathered rows (see the module doc for the layout).
    ///
    /// FFM requires `field < num_fields` for every feature: the feature pipeline guarantees it
    /// (see [`ModelSpec::check_example`]); violating it is a bug, caught by a debug assertion or
    /// an out-of-bounds panic, never silently skipped.
    #[inline]
    pub fn forward(&self, ex: &Example, rows: &[f32], stride: usize, scratch: &mut Scratch) -> f32 {
        let dim = self.dim();
        let n = ex.features.len();
        debug_assert!(stride >= dim);
        debug_assert!(rows.len() >= n.saturating_sub(1) * stride + if n > 0 { dim } else { 0 });
        match self.kind {
            ShallowKind::Lr => {
                let mut s = 0.0f32;
                for (i, f) in ex.features.iter().enumerate() {
                    s += rows[i * stride] * f.value;
                }
                s
            }
            ShallowKind::Fm => self.fm_forward(ex, rows, stride, scratch),
            ShallowKind::Ffm => self.ffm_forward(ex, rows, stride),
        }
    }

    /// Gradient of the loss with respect to each feature's weights, given `dscore` = dloss/dscore
    /// (already times the example weight). Writes feature `i`'s gradient to
    /// `grads[i * dim .. (i + 1) * dim]`. Must follow [`ModelSpec::forward`] on the same example
    /// and rows with the same scratch: FM reuses the per-factor sums cached there.
    #[inline]
    pub fn backward(
        &self,
        ex: &Example,
        rows: &[f32],
        stride: usize,
        dscore: f32,
        scratch: &mut Scratch,
        grads: &mut [f32],
    ) {
        let dim = self.dim();
        let n = ex.features.len();
        debug_assert!(grads.len() >= n * dim);
        match self.kind {
            ShallowKind::Lr => {
                for (g, f) in grads[..n].iter_mut().zip(&ex.features) {
                    *g = dscore * f.value;
                }
            }
            ShallowKind::Fm => {
                debug_assert_eq!(scratch.sum.len(), self.k, "backward without forward");
                match self.k {
                    4 => fm_backward::<4>(ex, rows, stride, dscore, &scratch.sum, grads),
                    8 => fm_backward::<8>(ex, rows, stride, dscore, &scratch.sum, grads),
                    16 => fm_backward::<16>(ex, rows, stride, dscore, &scratch.sum, grads),
                    k => fm_backward_any(k, ex, rows, stride, dscore, &scratch.sum, grads),
                }
            }
            ShallowKind::Ffm => self.ffm_backward(ex, rows, stride, dscore, grads),
        }
    }

    /// FM's score, with the per-factor sums left in `scratch` for backward. The common `k` get
    /// loops over fixed-size arrays, which the compiler keeps in vector registers; every `k`
    /// adds in the same order, so the specialised and general loops give the same bits.
    fn fm_forward(&self, ex: &Example, rows: &[f32], stride: usize, scratch: &mut Scratch) -> f32 {
        match self.k {
            4 => fm_forward::<4>(ex, rows, stride, &mut scratch.sum),
            8 => fm_forward::<8>(ex, rows, stride, &mut scratch.sum),
            16 => fm_forward::<16>(ex, rows, stride, &mut scratch.sum),
            k => fm_forward_any(k, ex, rows, stride, scratch),
        }
    }

    /// Latent vector of feature `i` for interacting with field `field`.
    #[inline(always)]
    fn ffm_vec<'a>(&self, rows: &'a [f32], stride: usize, i: usize, field: u32) -> &'a [f32] {
        debug_assert!((field as usize) < self.num_fields, "FFM field {field} >= num_fields {}", self.num_fields);
        let start = i * stride + 1 + field as usize * self.k;
        &rows[start..start + self.k]
    }

    fn ffm_forward(&self, ex: &Example, rows: &[f32], stride: usize) -> f32 {
        let feats = &ex.features;
        let mut lin = 0.0f32;
        let mut inter = 0.0f32;
        for (i, fi) in feats.iter().enumerate() {
            lin += rows[i * stride] * fi.value;
            for (j, fj) in feats.iter().enumerate().skip(i + 1) {
                let vi = self.ffm_vec(rows, stride, i, fj.field);
                let vj = self.ffm_vec(rows, stride, j, fi.field);
                let dot: f32 = vi.iter().zip(vj).map(|(a, b)| a * b).sum();
                inter += dot * fi.value * fj.value;
            }
        }
        lin + inter
    }

    fn ffm_backward(&self, ex: &Example, rows: &[f32], stride: usize, dscore: f32, grads: &mut [f32]) {
        let feats = &ex.features;
        let (dim, k) = (self.dim(), self.k);
        grads[..feats.len() * dim].fill(0.0);
        for (i, fi) in feats.iter().enumerate() {
            grads[i * dim] = dscore * fi.value;
            for (j, fj) in feats.iter().enumerate().skip(i + 1) {
                let c = dscore * fi.value * fj.value;
                let vi = self.ffm_vec(rows, stride, i, fj.field);
                let vj = self.ffm_vec(rows, stride, j, fi.field);
                let gi = i * dim + 1 + fj.field as usize * k;
                for (g, &v) in grads[gi..gi + k].iter_mut().zip(vj) {
                    *g += c * v;
                }
                let gj = j * dim + 1 + fi.field as usize * k;
                for (g, &v) in grads[gj..gj + k].iter_mut().zip(vi) {
                    *g += c * v;
                }
            }
        }
    }
}

/// FM's linear part, per-factor sums `s_f = sum_i v_if x_i` and per-factor sums of squares
/// `q_f = sum_i (v_if x_i)^2` are accumulated feature by feature; the score is
/// `lin + 0.5 * (sum_f s_f^2 - sum_f q_f)`, both sums over `f` in order. Keeping one square sum
/// per factor (not one for all) lets the factors' additions run side by side.
#[inline(always)]
fn fm_score(lin: f32, sum: &[f32], sq: &[f32]) -> f32 {
    let sum_sq: f32 = sum.iter().map(|s| s * s).sum();
    let sq: f32 = sq.iter().sum();
    lin + 0.5 * (sum_sq - sq)
}

/// FM forward for `K` factors (see [`fm_score`]); leaves the sums in `sums`.
#[inline(always)]
fn fm_forward<const K: usize>(ex: &Example, rows: &[f32], stride: usize, sums: &mut Vec<f32>) -> f32 {
    let (mut lin, mut sum, mut sq) = (0.0f32, [0.0f32; K], [0.0f32; K]);
    for (i, f) in ex.features.iter().enumerate() {
        let x = f.value;
        let row = &rows[i * stride..i * stride + 1 + K];
        lin += row[0] * x;
        let v: &[f32; K] = row[1..].try_into().expect("row of 1 + K weights");
        for t in 0..K {
            let vx = v[t] * x;
            sum[t] += vx;
            sq[t] += vx * vx;
        }
    }
    sums.clear();
    sums.extend_from_slice(&sum);
    fm_score(lin, &sum, &sq)
}

/// FM forward for any `k`, in the order of [`fm_forward`].
fn fm_forward_any(k: usize, ex: &Example, rows: &[f32], stride: usize, scratch: &mut Scratch) -> f32 {
    let Scratch { sum, sq } = scratch;
    sum.clear();
    sum.resize(k, 0.0);
    sq.clear();
    sq.resize(k, 0.0);
    let mut lin = 0.0f32;
    for (i, f) in ex.features.iter().enumerate() {
        let x = f.value;
        let row = &rows[i * stride..i * stride + 1 + k];
        lin += row[0] * x;
        for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(&row[1..]) {
            let vx = v * x;
            *s += vx;
            *q += vx * vx;
        }
    }
    fm_score(lin, sum, sq)
}

/// FM backward for `K` factors: `d/dv_if = x_i (s_f - v_if x_i)`, times `dscore`.
#[inline(always)]
fn fm_backward<const K: usize>(ex: &Example, rows: &[f32], stride: usize, dscore: f32, sum: &[f32], grads: &mut [f32]) {
    let sum: &[f32; K] = sum.try_into().expect("forward left K sums");
    for (i, f) in ex.features.iter().enumerate() {
        let x = f.value;
        let v: &[f32; K] = rows[i * stride + 1..i * stride + 1 + K].try_into().expect("row of 1 + K weights");
        let g = &mut grads[i * (1 + K)..(i + 1) * (1 + K)];
        g[0] = dscore * x;
        let gv: &mut [f32; K] = (&mut g[1..]).try_into().expect("gradient of 1 + K");
        for t in 0..K {
            gv[t] = dscore * x * (sum[t] - v[t] * x);
        }
    }
}

/// FM backward for any `k`, as [`fm_backward`].
fn fm_backward_any(k: usize, ex: &Example, rows: &[f32], stride: usize, dscore: f32, sum: &[f32], grads: &mut [f32]) {
    let dim = 1 + k;
    for (i, f) in ex.features.iter().enumerate() {
        let x = f.value;
        let row = &rows[i * stride..i * stride + dim];
        let g = &mut grads[i * dim..(i + 1) * dim];
        g[0] = dscore * x;
        for ((gv, &v), &s) in g[1..].iter_mut().zip(&row[1..]).zip(sum) {
            *gv = dscore * x * (s - v * x);
        }
    }
}

/// Reusable buffers of forward/backward, so the hot path never allocates after warm-up.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// FM: `sum_i v_if x_i` per factor `f`, cached by forward for backward.
    sum: Vec<f32>,
    /// FM of an unusual `k`: `sum_i (v_if x_i)^2` per factor.
    sq: Vec<f32>,
}

impl Scratch {
    /// Buffers already sized for `spec` (a `Default` scratch grows on first use instead).
    pub fn new(spec: &ModelSpec) -> Self {
        Scratch { sum: Vec::with_capacity(spec.k), sq: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Feature;
    use crate::loss::Loss;
    use crate::rng::Rng;

    /// Naive f64 score straight from the model definitions (pairwise sums, no FM identity).
    fn ref_score(spec: &ModelSpec, ex: &Example, rows: &[f64], stride: usize) -> f64 {
        let f = &ex.features;
        let mut s = 0.0;
        for i in 0..f.len() {
            s += rows[i * stride] * f64::from(f[i].value);
        }
        if spec.kind == ShallowKind::Lr {
            return s;
        }
        let k = spec.k;
        for i in 0..f.len() {
            for j in i + 1..f.len() {
                let (oi, oj) = match spec.kind {
                    ShallowKind::Fm => (i * stride + 1, j * stride + 1),
                    _ => (i * stride + 1 + f[j].field as usize * k, j * stride + 1 + f[i].field as usize * k),
                };
                let dot: f64 = (0..k).map(|t| rows[oi + t] * rows[oj + t]).sum();
                s += dot * f64::from(f[i].value) * f64::from(f[j].value);
            }
        }
        s
    }

    fn ref_loss(loss: Loss, s: f64, y: f64) -> f64 {
        match loss {
            Loss::Logistic => s.max(0.0) + (-s.abs()).exp().ln_1p() - y * s,
            Loss::Squared => 0.5 * (s - y) * (s - y),
        }
    }

    fn random_example(rng: &mut Rng, n: usize, num_fields: usize) -> Example {
        let mut features = Vec::new();
        for _ in 0..n {
            // Few distinct keys/fields so repeats happen; values away from 1 exercise the x terms.
            let key = rng.below(6);
            let field = rng.below(num_fields as u64) as u32;
            let value = (rng.next_f64() * 3.0 - 1.5) as f32;
            features.push(Feature { key, value, field });
        }
        Example { label: if rng.below(2) == 1 { 1.0 } else { 0.0 }, weight: 1.0, features }
    }

    /// Rows gathered for `ex`: random values (not the init) so every term matters, plus junk
    /// optimizer state after `dim` that must be ignored.
    fn gather(spec: &ModelSpec, ex: &Example, stride: usize, rng: &mut Rng) -> Vec<f32> {
        let dim = spec.dim();
        let mut rows = vec![f32::NAN; ex.features.len() * stride];
        for i in 0..ex.features.len() {
            for t in 0..dim {
                rows[i * stride + t] = (rng.next_f64() - 0.5) as f32;
            }
        }
        rows
    }

    fn gradient_check(spec: ModelSpec) {
        spec.validate().unwrap();
        let dim = spec.dim();
        let mut rng = Rng::new(42);
        let mut scratch = Scratch::default();
        for loss in [Loss::Logistic, Loss::Squared] {
            for trial in 0..12 {
                let n = [0, 1, 2, 5, 9][trial % 5];
                let ex = random_example(&mut rng, n, spec.num_fields.max(1));
                let stride = dim + trial % 3;
                let rows = gather(&spec, &ex, stride, &mut rng);
                let score = spec.forward(&ex, &rows, stride, &mut scratch);
                let rows64: Vec<f64> = rows.iter().map(|&r| f64::from(r)).collect();
                let rs = ref_score(&spec, &ex, &rows64, stride);
                assert!((f64::from(score) - rs).abs() < 1e-4 * (1.0 + rs.abs()), "{spec:?} score {score} vs {rs}");
                let d = loss.dscore(score, ex.label);
                let mut grads = vec![f32::NAN; n * dim];
                spec.backward(&ex, &rows, stride, d, &mut scratch, &mut grads);
                let y = f64::from(ex.label);
                for i in 0..n {
                    for t in 0..dim {
                        let h = 1e-6;
                        let mut p = rows64.clone();
                        p[i * stride + t] += h;
                        let lp = ref_loss(loss, ref_score(&spec, &ex, &p, stride), y);
                        p[i * stride + t] -= 2.0 * h;
                        let lm = ref_loss(loss, ref_score(&spec, &ex, &p, stride), y);
                        let fd = (lp - lm) / (2.0 * h);
                        let g = f64::from(grads[i * dim + t]);
                        assert!(
                            (g - fd).abs() < 1e-4 * (1.0 + fd.abs()),
                            "{:?} {loss:?} trial {trial} feature {i} slot {t}: analytic {g} vs numeric {fd}",
                            spec.kind
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn lr_gradient_matches_finite_differences() {
        gradient_check(ModelSpec::lr());
    }

    #[test]
    fn fm_gradient_matches_finite_differences() {
        gradient_check(ModelSpec::fm(3));
    }

    #[test]
    fn ffm_gradient_matches_finite_differences() {
        gradient_check(ModelSpec::ffm(2, 3));
    }

    #[test]
    fn fm_loops_for_common_k_match_the_general_loop_bit_for_bit() {
        let mut rng = Rng::new(5);
        for k in [4, 8, 16] {
            let spec = ModelSpec::fm(k);
            let stride = spec.dim() + 3;
            for n in [0, 1, 7, 40] {
                let ex = random_example(&mut rng, n, 1);
                let rows = gather(&spec, &ex, stride, &mut rng);
                let (mut fast, mut general) = (Scratch::default(), Scratch::default());
                let a = spec.forward(&ex, &rows, stride, &mut fast);
                let b = fm_forward_any(k, &ex, &rows, stride, &mut general);
                assert_eq!(a.to_bits(), b.to_bits(), "k {k}, {n} features");
                let (mut ga, mut gb) = (vec![0f32; n * spec.dim()], vec![0f32; n * spec.dim()]);
                spec.backward(&ex, &rows, stride, 0.3, &mut fast, &mut ga);
                fm_backward_any(k, &ex, &rows, stride, 0.3, &general.sum, &mut gb);
                assert_eq!(
                    ga.iter().map(|g| g.to_bits()).collect::<Vec<_>>(),
                    gb.iter().map(|g| g.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn dims() {
        assert_eq!(ModelSpec::lr().dim(), 1);
        assert_eq!(ModelSpec::fm(4).dim(), 5);
        assert_eq!(ModelSpec::ffm(4, 3).dim(), 13);
    }

    #[test]
    fn init_is_deterministic_per_key_and_scaled() {
        let spec = ModelSpec { seed: 9, init_scale: 0.5, ..ModelSpec::fm(4) };
        let (mut a, mut b, mut c) = ([1f32; 5], [2f32; 5], [0f32; 5]);
        spec.init_weights(77, &mut a);
        spec.init_weights(77, &mut b);
        spec.init_weights(78, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[0], 0.0);
        assert!(a[1..].iter().all(|v| v.abs() <= 0.5 && *v != 0.0));
        let other_seed = ModelSpec { seed: 10, ..spec.clone() };
        other_seed.init_weights(77, &mut b);
        assert_ne!(a, b);
        let mut lr = [3f32];
        ModelSpec::lr().init_weights(5, &mut lr);
        assert_eq!(lr, [0.0]);
        assert!(ModelSpec::lr().zero_init() && !spec.zero_init());
    }

    #[test]
    fn validate_rejects_bad_specs() {
        assert!(ModelSpec::lr().validate().is_ok());
        assert_eq!(ModelSpec::fm(0).validate(), Err(ModelError::ZeroK { kind: "fm" }));
        assert_eq!(ModelSpec::ffm(0, 3).validate(), Err(ModelError::ZeroK { kind: "ffm" }));
        assert_eq!(ModelSpec::ffm(4, 0).validate(), Err(ModelError::ZeroFields));
        assert!(ModelSpec::ffm(usize::MAX, 2).validate().is_err());
        let bad = ModelSpec { init_scale: f32::NAN, ..ModelSpec::fm(2) };
        assert!(matches!(bad.validate(), Err(ModelError::BadInitScale(_))));
    }

    #[test]
    fn check_example_flags_out_of_range_fields() {
        let spec = ModelSpec::ffm(2, 2);
        let mut ex = Example { label: 1.0, weight: 1.0, features: vec![Feature { key: 1, value: 1.0, field: 1 }] };
        assert!(spec.check_example(&ex).is_ok());
        ex.features.push(Feature { key: 2, value: 1.0, field: 2 });
        assert_eq!(spec.check_example(&ex), Err(ModelError::FieldOutOfRange { field: 2, num_fields: 2 }));
        assert!(ModelSpec::fm(2).check_example(&ex).is_ok());
    }
}
