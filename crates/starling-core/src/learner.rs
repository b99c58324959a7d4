//! Single-machine online learning, one example at a time (VW style): gather the rows of an
//! example's features, forward, backward, apply the optimizer to each distinct row, write back.
//!
//! Threads may share one table Hogwild-style, each with its own [`LearnScratch`].

use crate::error::ModelError;
use crate::example::Example;
use crate::loss::Loss;
use crate::model::{ModelSpec, Scratch};
use crate::optim::{Optimizer, RowRule};
use crate::table::{DenseTable, HashTable, RowInit, Table};

/// A model, its optimizer and its loss: everything needed to train rows in a [`Table`].
#[derive(Clone, Debug, PartialEq)]
pub struct Learner {
    /// Model shape and init.
    pub model: ModelSpec,
    /// Per-row update rule.
    pub optimizer: Optimizer,
    /// Loss on the raw score.
    pub loss: Loss,
}

/// Per-thread buffers of [`Learner`], grown to the largest example seen and then reused.
#[derive(Clone, Debug, Default)]
pub struct LearnScratch {
    /// Gathered rows, `row_len` floats per feature occurrence.
    rows: Vec<f32>,
    /// Gradients, `dim` floats per feature occurrence.
    grads: Vec<f32>,
    /// Index of the first occurrence of each feature's key; valid only for examples with repeats.
    first: Vec<u32>,
    dedup: Dedup,
    model: Scratch,
}

impl LearnScratch {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One slot of the per-example open-addressing set of keys.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: u64,
    idx: u32,
    stamp: u32,
}

/// Words of the per-example bit filter: 2^14 bits, so 40 distinct keys collide in under 5% of examples.
const FILTER_WORDS: usize = 256;

/// Finds repeated keys in an example, so each table row is updated once with the summed gradient.
///
/// A bit filter answers "no repeats" for almost every example without branches; only when two
/// keys share a filter bit does an exact pass run, with an open-addressing set whose slots are
/// stamped with an example counter so it is never cleared.
#[derive(Clone, Debug)]
struct Dedup {
    filter: Box<[u64; FILTER_WORDS]>,
    slots: Vec<Slot>,
    stamp: u32,
    shift: u32,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup { filter: Box::new([0; FILTER_WORDS]), slots: Vec::new(), stamp: 0, shift: 0 }
    }
}

/// Spreads a key over 64 bits; the top bits index the filter and the exact set.
#[inline(always)]
fn spread(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Dedup {
    /// Sets the filter bit of `key`; non-zero when it was already set (a possible repeat).
    #[inline(always)]
    fn mark(&mut self, key: u64) -> u64 {
        let h = (spread(key) >> 50) as usize;
        let word = &mut self.filter[h >> 6];
        let bit = 1u64 << (h & 63);
        let hit = *word & bit;
        *word |= bit;
        hit
    }

    /// Clears the filter bits set for `features`.
    #[inline(always)]
    fn unmark(&mut self, features: &[crate::example::Feature]) {
        for f in features {
            self.filter[(spread(f.key) >> 56) as usize] = 0;
        }
    }

    /// Prepares the exact set for an example of `n` features.
    fn begin(&mut self, n: usize) {
        // Load factor <= 1/4 keeps probe chains short.
        let want = (4 * n).next_power_of_two().max(16);
        if self.slots.len() < want {
            self.slots = vec![Slot::default(); want];
            self.stamp = 0;
            self.shift = 64 - want.trailing_zeros();
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.slots.fill(Slot::default());
            self.stamp = 1;
        }
    }

    /// Index of the first feature with `key`, recording `i` if this is the first.
    #[inline]
    fn first(&mut self, key: u64, i: u32) -> u32 {
        let mask = self.slots.len() - 1;
        let mut h = (spread(key) >> self.shift) as usize;
        loop {
            let s = &mut self.slots[h];
            if s.stamp != self.stamp {
                *s = Slot { key, idx: i, stamp: self.stamp };
                return i;
            }
            if s.key == key {
                return s.idx;
            }
            h = (h + 1) & mask;
        }
    }
}

impl Learner {
    /// A learner after checking the model and optimizer settings.
    pub fn new(model: ModelSpec, optimizer: Optimizer, loss: Loss) -> Result<Self, ModelError> {
        model.validate()?;
        optimizer.validate()?;
        Ok(Learner { model, optimizer, loss })
    }

    /// Floats per table row: the model's weights then the optimizer's state.
    #[inline]
    pub fn row_len(&self) -> usize {
        let dim = self.model.dim();
        dim + self.optimizer.state_len(dim)
    }

    /// How fresh rows of this learner's tables look.
    pub fn row_init(&self) -> RowInit {
        RowInit::new(&self.model, self.row_len())
    }

    /// A dense table over keys `< 2^bits` with this learner's row shape.
    pub fn dense_table(&self, bits: u32) -> DenseTable {
        DenseTable::new(bits, self.row_len(), self.row_init())
    }

    /// A hash table over full 64-bit keys with this learner's row shape.
    pub fn hash_table(&self) -> HashTable {
        HashTable::new(self.row_len(), self.row_init())
    }

    /// Copies the rows of `ex`'s features into `s.rows`; with `dedup`, returns whether any key
    /// repeats, and if so records first occurrences in `s.first`.
    #[inline(always)]
    fn gather<T: Table + ?Sized>(&self, table: &T, ex: &Example, s: &mut LearnScratch, dedup: bool) -> bool {
        let stride = self.row_len();
        debug_assert_eq!(table.row_len(), stride, "table rows do not match the learner");
        let n = ex.features.len();
        if s.rows.len() < n * stride {
            s.rows.resize(n * stride, 0.0);
        }
        // Issue every row's cache misses first so they overlap instead of queueing one by one.
        self.prefetch(table, ex);
        let rows = s.rows.chunks_exact_mut(stride);
        if !dedup || n < 2 {
            for (f, row) in ex.features.iter().zip(rows) {
                table.read(f.key, row);
            }
            return false;
        }
        let mut maybe = 0u64;
        for (f, row) in ex.features.iter().zip(rows) {
            table.read(f.key, row);
            maybe |= s.dedup.mark(f.key);
        }
        s.dedup.unmark(&ex.features);
        if maybe == 0 {
            return false;
        }
        if s.first.len() < n {
            s.first.resize(n, 0);
        }
        s.dedup.begin(n);
        let mut repeats = false;
        for (i, f) in ex.features.iter().enumerate() {
            let j = s.dedup.first(f.key, i as u32) as usize;
            s.first[i] = j as u32;
            if j != i {
                // Same key, same row: copy so all occurrences agree even if another thread wrote meanwhile.
                s.rows.copy_within(j * stride..(j + 1) * stride, i * stride);
                repeats = true;
            }
        }
        repeats
    }

    /// Starts loading the rows of `ex` into cache without waiting: call it on the next example
    /// before [`Learner::learn`] on this one so their memory latencies overlap.
    #[inline]
    pub fn prefetch<T: Table + ?Sized>(&self, table: &T, ex: &Example) {
        for f in &ex.features {
            table.prefetch(f.key);
        }
    }

    /// Raw score of `ex` under the rows in `table` (no update).
    pub fn score<T: Table + ?Sized>(&self, table: &T, ex: &Example, scratch: &mut LearnScratch) -> f32 {
        self.gather(table, ex, scratch, false);
        self.model.forward(ex, &scratch.rows, self.row_len(), &mut scratch.model)
    }

    /// Prediction for `ex`: a probability for logistic loss, the score for squared loss.
    pub fn predict<T: Table + ?Sized>(&self, table: &T, ex: &Example, scratch: &mut LearnScratch) -> f32 {
        self.loss.predict(self.score(table, ex, scratch))
    }

    /// One online step on `ex`; returns the raw score *before* the update (progressive validation).
    ///
    /// The gradient is scaled by the example's importance weight; a weight of 0 scores without
    /// updating (otherwise L2 and Adam's momentum would still move rows). A key repeated within
    /// the example gets one update with the summed gradient, as a mini-batch push would.
    pub fn learn<T: Table + ?Sized>(&self, table: &T, ex: &Example, scratch: &mut LearnScratch) -> f32 {
        let stride = self.row_len();
        let dim = self.model.dim();
        let n = ex.features.len();
        let repeats = self.gather(table, ex, scratch, true);
        let score = self.model.forward(ex, &scratch.rows, stride, &mut scratch.model);
        if ex.weight == 0.0 || n == 0 {
            return score;
        }
        let dscore = self.loss.dscore(score, ex.label) * ex.weight;
        let s = scratch;
        if s.grads.len() < n * dim {
            s.grads.resize(n * dim, 0.0);
        }
        self.model.backward(ex, &s.rows, stride, dscore, &mut s.model, &mut s.grads);
        if repeats {
            for i in 0..n {
                let j = s.first[i] as usize;
                if j != i {
                    let (head, tail) = s.grads.split_at_mut(i * dim);
                    for (a, b) in head[j * dim..(j + 1) * dim].iter_mut().zip(&tail[..dim]) {
                        *a += *b;
                    }
                }
            }
        }
        // Dispatch on the optimizer once per example so the rule inlines into the row loop.
        self.optimizer.with_rule(ApplyRows { table, ex, s, dim, stride, repeats });
        score
    }
}

/// Updates each distinct row of the example with the rule and writes it back.
struct ApplyRows<'a, T: Table + ?Sized> {
    table: &'a T,
    ex: &'a Example,
    s: &'a mut LearnScratch,
    dim: usize,
    stride: usize,
    repeats: bool,
}

impl<T: Table + ?Sized> RowRule for ApplyRows<'_, T> {
    type Out = ();

    #[inline(always)]
    fn run<R: Fn(&mut [f32], &mut [f32], &[f32])>(self, rule: R) {
        let ApplyRows { table, ex, s, dim, stride, repeats } = self;
        let n = ex.features.len();
        let rows = s.rows[..n * stride].chunks_exact_mut(stride);
        let grads = s.grads[..n * dim].chunks_exact(dim);
        for (i, ((f, row), g)) in ex.features.iter().zip(rows).zip(grads).enumerate() {
            if repeats && s.first[i] as usize != i {
                continue;
            }
            let (w, state) = row.split_at_mut(dim);
            rule(w, state, g);
            table.write(f.key, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Feature;
    use crate::rng::Rng;

    fn feat(key: u64, value: f32, field: u32) -> Feature {
        Feature { key, value, field }
    }

    /// Bias + one signal key (0..10: positive iff < 5) + 3 noise keys; separable by the signal key.
    fn toy(rng: &mut Rng) -> Example {
        let sig = rng.below(10);
        let mut features = vec![feat(1000, 1.0, 0), feat(sig, 1.0, 1)];
        for f in 2..5 {
            features.push(feat(100 + rng.below(50), 1.0, f));
        }
        Example { label: if sig < 5 { 1.0 } else { 0.0 }, weight: 1.0, features }
    }

    fn table_rows<T: Table + ?Sized>(t: &T) -> Vec<(u64, Vec<u32>)> {
        let mut out = Vec::new();
        t.for_each_row(&mut |k, r| out.push((k, r.iter().map(|v| v.to_bits()).collect())));
        out
    }

    #[test]
    fn lr_learns_a_separable_problem() {
        // Rates sized for 10^4 examples; the defaults target much longer streams.
        let adam = Optimizer::Adam { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, l2: 0.0 };
        let ftrl = Optimizer::Ftrl { alpha: 0.5, beta: 1.0, l1: 0.1, l2: 0.1 };
        let adagrad = Optimizer::Adagrad { lr: 0.1, l2: 0.0, eps: 1e-6 };
        for opt in [Optimizer::sgd_default(), adagrad, ftrl, adam] {
            let learner = Learner::new(ModelSpec::lr(), opt, Loss::Logistic).unwrap();
            let table = learner.dense_table(12);
            let mut s = LearnScratch::new();
            let mut rng = Rng::new(1);
            let mut pass_loss = Vec::new();
            for _ in 0..20 {
                let mut total = 0.0;
                for _ in 0..500 {
                    let ex = toy(&mut rng);
                    total += learner.loss.value(learner.learn(&table, &ex, &mut s), ex.label);
                }
                pass_loss.push(total / 500.0);
            }
            let (first, last) = (pass_loss[0], *pass_loss.last().unwrap());
            assert!(last < 0.5 * first && last < 0.1, "{}: loss {first} -> {last}", opt.name());
            for _ in 0..200 {
                let ex = toy(&mut rng);
                let p = learner.predict(&table, &ex, &mut s);
                assert_eq!(p > 0.5, ex.label > 0.5, "{} misclassifies {ex:?}", opt.name());
            }
        }
    }

    #[test]
    fn fm_and_ffm_learn_an_interaction() {
        // XOR of two one-hot fields: LR stays at ln 2, a factorization machine fits it.
        let final_loss = |model: ModelSpec| {
            let learner = Learner::new(model, Optimizer::adagrad_default(), Loss::Logistic).unwrap();
            let table = learner.hash_table();
            let mut s = LearnScratch::new();
            let mut rng = Rng::new(5);
            let mut total = 0.0;
            for _ in 0..40 {
                total = 0.0;
                for _ in 0..200 {
                    let (a, b) = (rng.below(2), rng.below(2));
                    let ex = Example {
                        label: if a != b { 1.0 } else { 0.0 },
                        weight: 1.0,
                        features: vec![feat(999, 1.0, 0), feat(10 + a, 1.0, 1), feat(20 + b, 1.0, 2)],
                    };
                    total += learner.loss.value(learner.learn(&table, &ex, &mut s), ex.label);
                }
            }
            total / 200.0
        };
        let lr = final_loss(ModelSpec::lr());
        assert!(lr > 0.6, "LR cannot fit XOR, yet reached {lr}");
        for model in [ModelSpec::fm(4), ModelSpec::ffm(4, 3)] {
            let kind = model.kind;
            let l = final_loss(model);
            assert!(l < 0.01, "{kind:?} should fit XOR: loss {l}");
        }
    }

    #[test]
    fn learn_returns_the_pre_update_score() {
        let learner = Learner::new(ModelSpec::fm(3), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
        let table = learner.dense_table(10);
        let mut s = LearnScratch::new();
        let ex = Example { label: 1.0, weight: 1.0, features: vec![feat(1, 1.0, 0), feat(2, 0.5, 1), feat(3, 2.0, 0)] };
        for _ in 0..3 {
            let before = learner.score(&table, &ex, &mut s);
            let got = learner.learn(&table, &ex, &mut s);
            let after = learner.score(&table, &ex, &mut s);
            assert_eq!(got.to_bits(), before.to_bits());
            assert!(after > before, "a positive example must raise its score: {before} -> {after}");
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn empty_and_zero_weight_examples_change_nothing() {
        let learner = Learner::new(ModelSpec::fm(2), Optimizer::adam_default(), Loss::Squared).unwrap();
        let table = learner.hash_table();
        let mut s = LearnScratch::new();
        let empty = Example { label: 3.0, weight: 1.0, features: vec![] };
        assert_eq!(learner.learn(&table, &empty, &mut s), 0.0);
        let zero_w = Example { label: 3.0, weight: 0.0, features: vec![feat(4, 1.0, 0)] };
        learner.learn(&table, &zero_w, &mut s);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn repeated_keys_get_one_update_with_the_summed_gradient() {
        let (lr, eps) = (0.2f32, 1e-6f32);
        let learner = Learner::new(ModelSpec::lr(), Optimizer::Adagrad { lr, l2: 0.0, eps }, Loss::Logistic).unwrap();
        let table = learner.dense_table(6);
        let mut s = LearnScratch::new();
        let ex = Example { label: 1.0, weight: 2.0, features: vec![feat(7, 1.0, 0), feat(3, 1.0, 0), feat(7, 2.0, 0)] };
        assert_eq!(learner.learn(&table, &ex, &mut s), 0.0);
        // dscore = (0.5 - 1) * 2 = -1; key 7 gets g = -1 * (1 + 2) = -3 once: n = 9, w = 0.2 * 3 / 3.
        let mut row = [0f32; 2];
        table.read(7, &mut row);
        assert!((row[1] - 9.0).abs() < 1e-6, "{row:?}");
        assert!((row[0] - lr * 3.0 / (3.0 + eps)).abs() < 1e-6, "{row:?}");
        table.read(3, &mut row);
        assert!((row[1] - 1.0).abs() < 1e-6 && (row[0] - lr / (1.0 + eps)).abs() < 1e-6, "{row:?}");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn repeated_keys_match_the_model_gradient_for_ffm() {
        // With SGD the update of a repeated key must equal -lr times the sum of per-occurrence gradients.
        let model = ModelSpec { seed: 11, ..ModelSpec::ffm(2, 2) };
        let lr = 0.1;
        let learner = Learner::new(model.clone(), Optimizer::Sgd { lr, l2: 0.0 }, Loss::Squared).unwrap();
        let table = learner.hash_table();
        let ex = Example {
            label: 2.0,
            weight: 1.0,
            features: vec![feat(5, 1.0, 0), feat(6, 0.5, 1), feat(5, -1.5, 1), feat(8, 2.0, 0)],
        };
        let dim = model.dim();
        let mut rows = vec![0f32; 4 * dim];
        for (i, f) in ex.features.iter().enumerate() {
            model.init_weights(f.key, &mut rows[i * dim..(i + 1) * dim]);
        }
        let mut ms = Scratch::new(&model);
        let score = model.forward(&ex, &rows, dim, &mut ms);
        let mut grads = vec![0f32; 4 * dim];
        model.backward(&ex, &rows, dim, score - 2.0, &mut ms, &mut grads);
        let mut s = LearnScratch::new();
        assert_eq!(learner.learn(&table, &ex, &mut s), score);
        let mut row = vec![0f32; dim];
        table.read(5, &mut row);
        for t in 0..dim {
            let want = rows[t] - lr * (grads[t] + grads[2 * dim + t]);
            assert!((row[t] - want).abs() < 1e-6, "slot {t}: {} vs {want}", row[t]);
        }
    }

    /// The plain algorithm, with no prefetching, filters or fused loops: a row map, per-occurrence
    /// gather, forward, backward, gradients summed into each key's first occurrence, `update`.
    fn reference_step(learner: &Learner, rows: &mut std::collections::HashMap<u64, Vec<f32>>, ex: &Example) -> f32 {
        let (dim, len) = (learner.model.dim(), learner.row_len());
        let init = learner.row_init();
        let mut gathered = Vec::new();
        for f in &ex.features {
            let mut row = vec![0f32; len];
            match rows.get(&f.key) {
                Some(r) => row.copy_from_slice(r),
                None => init.fill(f.key, &mut row),
            }
            gathered.extend_from_slice(&row);
        }
        let mut ms = Scratch::default();
        let score = learner.model.forward(ex, &gathered, len, &mut ms);
        if ex.features.is_empty() || ex.weight == 0.0 {
            return score;
        }
        let d = learner.loss.dscore(score, ex.label) * ex.weight;
        let mut grads = vec![0f32; ex.features.len() * dim];
        learner.model.backward(ex, &gathered, len, d, &mut ms, &mut grads);
        let n = ex.features.len();
        let first: Vec<usize> =
            (0..n).map(|i| (0..=i).find(|&j| ex.features[j].key == ex.features[i].key).unwrap()).collect();
        for i in 0..n {
            if first[i] != i {
                for t in 0..dim {
                    let g = grads[i * dim + t];
                    grads[first[i] * dim + t] += g;
                }
            }
        }
        for i in (0..n).filter(|&i| first[i] == i) {
            let row = &mut gathered[i * len..(i + 1) * len];
            let (w, st) = row.split_at_mut(dim);
            learner.optimizer.update(w, st, &grads[i * dim..(i + 1) * dim]);
            rows.insert(ex.features[i].key, row.to_vec());
        }
        score
    }

    #[test]
    fn learn_matches_a_naive_reference_bit_for_bit() {
        let cases = [
            (ModelSpec::lr(), Optimizer::Adagrad { lr: 0.1, l2: 0.01, eps: 1e-6 }),
            (ModelSpec::lr(), Optimizer::Sgd { lr: 0.05, l2: 0.0 }),
            (ModelSpec { seed: 1, ..ModelSpec::fm(3) }, Optimizer::ftrl_default()),
            (
                ModelSpec { seed: 2, ..ModelSpec::ffm(2, 4) },
                Optimizer::Adam { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, l2: 0.001 },
            ),
        ];
        for (model, opt) in cases {
            let learner = Learner::new(model, opt, Loss::Logistic).unwrap();
            let table = learner.dense_table(16);
            let mut reference = std::collections::HashMap::new();
            let mut s = LearnScratch::new();
            let mut rng = Rng::new(8);
            for e in 0..400 {
                // Alternate small key ranges (many repeats) and large ones (filter false positives only).
                let range = if e % 2 == 0 { 64 } else { 1 << 16 };
                let n = rng.below(41) as usize;
                let features = (0..n)
                    .map(|_| feat(rng.below(range), (rng.next_f64() * 2.0 - 0.5) as f32, rng.below(4) as u32))
                    .collect();
                let weight = [1.0, 0.5, 2.0, 0.0][e % 4];
                let ex = Example { label: rng.below(2) as f32, weight, features };
                let want = reference_step(&learner, &mut reference, &ex);
                let got = learner.learn(&table, &ex, &mut s);
                assert_eq!(got.to_bits(), want.to_bits(), "{:?} example {e}", learner.model.kind);
            }
            assert_eq!(table.len(), reference.len());
            table.for_each_row(&mut |k, r| {
                let want = &reference[&k];
                assert!(r.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "row {k}: {r:?} vs {want:?}");
            });
        }
    }

    #[test]
    fn dedup_filter_is_clean_after_each_example() {
        let learner = Learner::new(ModelSpec::lr(), Optimizer::sgd_default(), Loss::Logistic).unwrap();
        let table = learner.hash_table();
        let mut s = LearnScratch::new();
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let features = (0..30).map(|_| feat(rng.below(40), 1.0, 0)).collect();
            learner.learn(&table, &Example { label: 1.0, weight: 1.0, features }, &mut s);
            assert!(s.dedup.filter.iter().all(|&w| w == 0), "stale filter bits would flag false repeats forever");
        }
    }

    #[test]
    fn new_rejects_invalid_settings() {
        assert_eq!(
            Learner::new(ModelSpec::fm(0), Optimizer::default(), Loss::Logistic),
            Err(ModelError::ZeroK { kind: "fm" })
        );
        assert!(Learner::new(ModelSpec::lr(), Optimizer::Sgd { lr: -1.0, l2: 0.0 }, Loss::Squared).is_err());
        let l = Learner::new(ModelSpec::ffm(4, 3), Optimizer::adam_default(), Loss::Logistic).unwrap();
        assert_eq!(l.row_len(), 13 + 27);
    }

    #[test]
    fn same_seed_gives_bit_identical_rows() {
        let run = |seed: u64| {
            let model = ModelSpec { seed, ..ModelSpec::ffm(3, 5) };
            let learner = Learner::new(model, Optimizer::ftrl_default(), Loss::Logistic).unwrap();
            let dense = learner.dense_table(10);
            let hash = learner.hash_table();
            let mut s = LearnScratch::new();
            let mut rng = Rng::new(77);
            for _ in 0..300 {
                let mut ex = toy(&mut rng);
                ex.features[0].value = 0.7;
                learner.learn(&dense, &ex, &mut s);
                learner.learn(&hash, &ex, &mut s);
            }
            let (d, h) = (table_rows(&dense), table_rows(&hash));
            assert_eq!(d, h, "dense and hash tables must train identically on small keys");
            d
        };
        let a = run(3);
        assert!(!a.is_empty());
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
    }

    #[test]
    fn dyn_table_and_hogwild_threads_work() {
        let learner = Learner::new(ModelSpec::lr(), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
        let table: Box<dyn Table> = Box::new(learner.dense_table(12));
        std::thread::scope(|sc| {
            for t in 0..3 {
                let (table, learner) = (&*table, &learner);
                sc.spawn(move || {
                    let mut s = LearnScratch::new();
                    let mut rng = Rng::new(t);
                    for _ in 0..3000 {
                        learner.learn(table, &toy(&mut rng), &mut s);
                    }
                });
            }
        });
        let mut s = LearnScratch::new();
        let mut rng = Rng::new(99);
        let correct = (0..200)
            .filter(|_| {
                let ex = toy(&mut rng);
                (learner.predict(&*table, &ex, &mut s) > 0.5) == (ex.label > 0.5)
            })
            .count();
        assert_eq!(correct, 200);
    }

    /// `n` examples of `FEATS` uniformly random keys below `2^bits`, labels from a hidden linear model.
    fn bench_examples(n: usize, bits: u32) -> Vec<Example> {
        let mut rng = Rng::new(123);
        let truth: Vec<f32> = (0..1024).map(|_| rng.normal() as f32).collect();
        (0..n)
            .map(|_| {
                let features: Vec<Feature> = (0..FEATS).map(|f| feat(rng.below(1 << bits), 1.0, f as u32)).collect();
                let z: f32 = features.iter().map(|f| truth[(f.key & 1023) as usize]).sum::<f32>() / 6.0;
                let label = if rng.next_f64() < 1.0 / (1.0 + f64::from(-z).exp()) { 1.0 } else { 0.0 };
                Example { label, weight: 1.0, features }
            })
            .collect()
    }

    const FEATS: usize = 40;

    /// Trains `passes` over `examples`; returns (ns per example of the fastest pass, mean logloss
    /// of the last pass). The fastest pass is reported because the machine is shared and noisy.
    fn time_learn<T: Table>(learner: &Learner, table: &T, examples: &[Example], passes: usize) -> (f64, f64) {
        let mut s = LearnScratch::new();
        let mut loss = 0.0f64;
        let mut best = f64::INFINITY;
        for _ in 0..passes {
            loss = 0.0;
            let start = std::time::Instant::now();
            for ex in examples {
                loss += f64::from(learner.loss.value(learner.learn(table, ex, &mut s), ex.label));
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        (best * 1e9 / examples.len() as f64, loss / examples.len() as f64)
    }

    /// Release-mode speed check: `cargo test -p starling-core --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_lr_dense_table() {
        const BITS: u32 = 24;
        const N: usize = 100_000;
        const PASSES: usize = 10;
        let examples = bench_examples(N, BITS);
        // Memory floor: the same random accesses as LR's gather, with no learning at all.
        let raw: Vec<f32> = (0..(2usize << BITS)).map(|i| i as f32).collect();
        let mut acc = 0.0f32;
        let mut best = f64::INFINITY;
        for _ in 0..PASSES {
            let start = std::time::Instant::now();
            for ex in &examples {
                for f in &ex.features {
                    acc += raw[f.key as usize * 2];
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "floor: {FEATS} independent random f32 reads from 2^{BITS} rows: {:.1} ns/example ({acc})",
            best * 1e9 / N as f64
        );
        drop(raw);
        for opt in [
            Optimizer::sgd_default(),
            Optimizer::adagrad_default(),
            Optimizer::ftrl_default(),
            Optimizer::adam_default(),
        ] {
            let learner = Learner::new(ModelSpec::lr(), opt, Loss::Logistic).unwrap();
            let table = learner.dense_table(BITS);
            let (ns, loss) = time_learn(&learner, &table, &examples, PASSES);
            println!(
                "LR {:8} DenseTable 2^{BITS}, {FEATS} features/example: {:.2} M examples/s ({ns:.0} ns/example), last-pass logloss {loss:.4}",
                opt.name(),
                1e3 / ns
            );
        }
        {
            // With the next example's rows prefetched while this one trains, as a trainer with a batch can.
            let learner = Learner::new(ModelSpec::lr(), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
            let table = learner.dense_table(BITS);
            let mut s = LearnScratch::new();
            let mut best = f64::INFINITY;
            for _ in 0..PASSES {
                let start = std::time::Instant::now();
                for (i, ex) in examples.iter().enumerate() {
                    if let Some(next) = examples.get(i + 1) {
                        learner.prefetch(&table, next);
                    }
                    learner.learn(&table, ex, &mut s);
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            let ns = best * 1e9 / N as f64;
            println!("LR adagrad  DenseTable 2^{BITS}, prefetching the next example: {:.2} M examples/s ({ns:.0} ns/example)", 1e3 / ns);
        }
        let learner = Learner::new(ModelSpec::lr(), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
        let (ns, _) = time_learn(&learner, &learner.hash_table(), &examples[..N / 10], 3);
        println!("LR adagrad HashTable ({} keys): {:.3} M examples/s", N / 10 * FEATS, 1e3 / ns);
        let learner = Learner::new(ModelSpec::fm(8), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
        let (ns, _) = time_learn(&learner, &learner.dense_table(BITS), &examples, 3);
        println!("FM k=8 adagrad DenseTable 2^{BITS}: {:.3} M examples/s", 1e3 / ns);
    }

    /// The compute cost of LR without DRAM misses (a 2^14-row table stays in L2).
    #[test]
    #[ignore]
    fn bench_lr_cache_resident() {
        let examples = bench_examples(20_000, 14);
        let learner = Learner::new(ModelSpec::lr(), Optimizer::adagrad_default(), Loss::Logistic).unwrap();
        let table = learner.dense_table(14);
        let (ns, _) = time_learn(&learner, &table, &examples, 50);
        println!("LR adagrad DenseTable 2^14 (cache-resident), {FEATS} features/example: {ns:.1} ns/example");
    }
}
