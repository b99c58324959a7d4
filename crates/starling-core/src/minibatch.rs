//! Mini-batch learning against pulled weights, the parameter-server form of [`Learner::learn`].
//!
//! A worker gathers a batch, de-duplicates its keys once, pulls their weights, and calls
//! [`Learner::batch_gradients`]: every example is scored with the pulled weights and the gradients
//! of each key are summed over the batch, ready to push. The server applies the optimizer, so the
//! update rule is the one the single-machine path uses. With a batch of one example this is
//! exactly [`Learner::learn`]: same score, same summed gradient for repeated keys, same update.

use crate::example::{Example, ExampleBuf};
use crate::learner::Learner;
use crate::model::Scratch;

/// A batch of examples and its distinct keys, sorted, with each feature occurrence's key index.
#[derive(Clone, Debug, Default)]
pub struct MiniBatch {
    examples: ExampleBuf,
    keys: Vec<u64>,
    /// Per feature occurrence (examples in order, features in order): index into its group's keys.
    slots: Vec<u32>,
    /// Keys of groups 1.. (group 0's are `keys`).
    more_keys: Vec<Vec<u64>>,
    groups: usize,
    pairs: Vec<(u64, u32)>,
    /// Radix sort's second buffer.
    sorted: Vec<(u64, u32)>,
    /// Pairs of groups 1.. while sealing.
    more_pairs: Vec<Vec<(u64, u32)>>,
}

impl MiniBatch {
    /// An empty batch.
    pub fn new() -> Self {
        MiniBatch { examples: ExampleBuf::new(), groups: 1, ..Default::default() }
    }

    /// Drops every example, keeping allocations.
    pub fn clear(&mut self) {
        self.examples.clear();
        self.keys.clear();
        self.slots.clear();
    }

    /// Adds a copy of `ex`.
    pub fn push(&mut self, ex: &Example) {
        self.examples.push(ex);
    }

    /// Examples held.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when no example is held.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The examples.
    pub fn examples(&self) -> &ExampleBuf {
        &self.examples
    }

    /// Computes the distinct keys and occurrence slots; call after the last [`MiniBatch::push`].
    pub fn seal(&mut self) {
        self.seal_groups(1, |_| 0);
    }

    /// As [`MiniBatch::seal`], with the keys split into `groups` groups by the field of each
    /// feature (`group_of(field) < groups`): each group's keys are distinct and sorted, and
    /// each occurrence's slot indexes its own group's keys.
    pub fn seal_groups(&mut self, groups: usize, group_of: impl Fn(u32) -> usize) {
        let groups = groups.max(1);
        self.groups = groups;
        self.pairs.clear();
        self.more_pairs.resize_with(groups - 1, Vec::new);
        self.more_pairs.iter_mut().for_each(Vec::clear);
        let mut occ = 0u32;
        for i in 0..self.examples.len() {
            for f in self.examples.features(i) {
                match group_of(f.field) {
                    0 => self.pairs.push((f.key, occ)),
                    g => self.more_pairs[g - 1].push((f.key, occ)),
                }
                occ += 1;
            }
        }
        self.slots.clear();
        self.slots.resize(occ as usize, 0);
        let pairs = sort_pairs(&mut self.pairs, &mut self.sorted);
        dedup_into(pairs, &mut self.keys, &mut self.slots);
        self.more_keys.resize_with(groups - 1, Vec::new);
        for (pairs, keys) in self.more_pairs.iter_mut().zip(&mut self.more_keys) {
            let pairs = sort_pairs(pairs, &mut self.sorted);
            dedup_into(pairs, keys, &mut self.slots);
        }
    }

    /// Number of key groups the batch was sealed with.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Distinct keys of group `g`, strictly increasing.
    pub fn group_keys(&self, g: usize) -> &[u64] {
        if g == 0 {
            &self.keys
        } else {
            &self.more_keys[g - 1]
        }
    }

    /// Per feature occurrence (examples in order, features in order): its key's index in its
    /// group's keys.
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// Distinct keys, strictly increasing (what a pull or push sends).
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }
}

/// Distinct keys of sorted `pairs` into `keys`, and each occurrence's index among them into `slots`.
fn dedup_into(pairs: &[(u64, u32)], keys: &mut Vec<u64>, slots: &mut [u32]) {
    keys.clear();
    for &(key, o) in pairs {
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        slots[o as usize] = (keys.len() - 1) as u32;
    }
}

/// Sorts `(key, occurrence)` pairs by key; returns whichever buffer holds the result.
///
/// A batch has tens of thousands of occurrences and this sort was a third of a worker's time, so
/// it is a byte-wise LSD radix sort that skips the bytes every key shares: keys folded into
/// 2^20 rows take three passes. Small batches use the comparison sort.
fn sort_pairs<'a>(pairs: &'a mut Vec<(u64, u32)>, tmp: &'a mut Vec<(u64, u32)>) -> &'a [(u64, u32)] {
    if pairs.len() < 512 {
        pairs.sort_unstable();
        return pairs;
    }
    let mut counts = [[0u32; 256]; 8];
    for &(k, _) in pairs.iter() {
        for (b, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * b)) as usize & 0xff] += 1;
        }
    }
    tmp.clear();
    tmp.resize(pairs.len(), (0, 0));
    let (mut src, mut dst) = (&mut **pairs, &mut **tmp);
    let n = src.len() as u32;
    for (b, c) in counts.iter_mut().enumerate() {
        if c.contains(&n) {
            continue; // every key has the same byte here
        }
        let mut at = 0u32;
        for x in c.iter_mut() {
            (*x, at) = (at, at + *x);
        }
        for &p in src.iter() {
            let slot = &mut c[(p.0 >> (8 * b)) as usize & 0xff];
            dst[*slot as usize] = p;
            *slot += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    src
}

/// Reusable buffers of [`Learner::batch_gradients`].
#[derive(Clone, Debug, Default)]
pub struct BatchScratch {
    ex: Example,
    rows: Vec<f32>,
    grads: Vec<f32>,
    model: Scratch,
}

impl Learner {
    /// Copies the pulled weights of example `i`'s features into `s.rows` (stride `dim`).
    fn gather_pulled(&self, batch: &MiniBatch, i: usize, occ: usize, weights: &[f32], s: &mut BatchScratch) {
        let dim = self.model.dim();
        let n = batch.examples.features(i).len();
        s.rows.resize(n * dim, 0.0);
        let slots = &batch.slots[occ..occ + n];
        if dim == 1 {
            // LR: a copy_from_slice per one-float row would be a memcpy call each.
            for (w, &k) in s.rows.iter_mut().zip(slots) {
                *w = weights[k as usize];
            }
            return;
        }
        for (row, &k) in s.rows.chunks_exact_mut(dim).zip(slots) {
            let k = k as usize;
            row.copy_from_slice(&weights[k * dim..(k + 1) * dim]);
        }
    }

    /// Scores every example of `batch` under `weights` (`dim` floats per batch key) and sums each
    /// key's gradient into `grads` (same layout; zeroed here). `touched[k]` tells whether key `k`
    /// got any gradient (examples of weight 0 give none, as in [`Learner::learn`]). `on_score` gets
    /// each example's raw score, label and weight, in order.
    pub fn batch_gradients(
        &self,
        batch: &MiniBatch,
        weights: &[f32],
        grads: &mut Vec<f32>,
        touched: &mut Vec<bool>,
        s: &mut BatchScratch,
        mut on_score: impl FnMut(f32, f32, f32),
    ) {
        let dim = self.model.dim();
        let nk = batch.keys.len();
        debug_assert_eq!(weights.len(), nk * dim);
        grads.clear();
        grads.resize(nk * dim, 0.0);
        touched.clear();
        touched.resize(nk, false);
        let mut occ = 0;
        for i in 0..batch.examples.len() {
            batch.examples.get_into(i, &mut s.ex);
            let n = s.ex.features.len();
            self.gather_pulled(batch, i, occ, weights, s);
            let score = self.model.forward(&s.ex, &s.rows, dim, &mut s.model);
            on_score(score, s.ex.label, s.ex.weight);
            if s.ex.weight != 0.0 && n > 0 {
                let dscore = self.loss.dscore(score, s.ex.label) * s.ex.weight;
                s.grads.resize(n * dim, 0.0);
                self.model.backward(&s.ex, &s.rows, dim, dscore, &mut s.model, &mut s.grads);
                for (j, g) in s.grads.chunks_exact(dim).enumerate() {
                    let k = batch.slots[occ + j] as usize;
                    for (a, b) in grads[k * dim..(k + 1) * dim].iter_mut().zip(g) {
                        *a += *b;
                    }
                    touched[k] = true;
                }
            }
            occ += n;
        }
    }

    /// Raw scores of every example of `batch` under `weights`, without gradients (evaluation).
    pub fn batch_scores(
        &self,
        batch: &MiniBatch,
        weights: &[f32],
        s: &mut BatchScratch,
        mut on_score: impl FnMut(f32, f32, f32),
    ) {
        let dim = self.model.dim();
        let mut occ = 0;
        for i in 0..batch.examples.len() {
            batch.examples.get_into(i, &mut s.ex);
            self.gather_pulled(batch, i, occ, weights, s);
            let score = self.model.forward(&s.ex, &s.rows, dim, &mut s.model);
            on_score(score, s.ex.label, s.ex.weight);
            occ += s.ex.features.len();
        }
    }
}

/// The touched keys and their gradients, in order (what a push sends). When every key was
/// touched (a dense block, and most batches' sparse rows) that is `keys` and `grads` as they
/// are, with no copy; otherwise they are compacted into `out_keys` and `out_grads`.
pub fn compact_touched<'a>(
    keys: &'a [u64],
    grads: &'a [f32],
    touched: &[bool],
    dim: usize,
    out_keys: &'a mut Vec<u64>,
    out_grads: &'a mut Vec<f32>,
) -> (&'a [u64], &'a [f32]) {
    if touched.iter().all(|&t| t) {
        return (keys, &grads[..keys.len() * dim]);
    }
    out_keys.clear();
    out_grads.clear();
    for (k, (&key, g)) in keys.iter().zip(grads.chunks_exact(dim)).enumerate() {
        if touched[k] {
            out_keys.push(key);
            out_grads.extend_from_slice(g);
        }
    }
    (out_keys, out_grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Feature;
    use crate::loss::Loss;
    use crate::model::ModelSpec;
    use crate::optim::Optimizer;
    use crate::table::{HashTable, Table};
    use crate::LearnScratch;

    fn ex(label: f32, weight: f32, keys: &[(u64, u32)]) -> Example {
        Example {
            label,
            weight,
            features: keys.iter().map(|&(key, field)| Feature { key, value: 0.5 + key as f32 * 0.1, field }).collect(),
        }
    }

    /// Pull from `table`, compute, apply the optimizer per touched key: a one-server push.
    fn batch_step(l: &Learner, t: &HashTable, b: &MiniBatch, s: &mut BatchScratch) -> Vec<f32> {
        let dim = l.model.dim();
        let mut w = vec![0f32; b.keys().len() * dim];
        let mut row = vec![0f32; l.row_len()];
        for (k, out) in b.keys().iter().zip(w.chunks_exact_mut(dim)) {
            t.read(*k, &mut row);
            out.copy_from_slice(&row[..dim]);
        }
        let (mut g, mut touched, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        l.batch_gradients(b, &w, &mut g, &mut touched, s, |sc, _, _| scores.push(sc));
        for ((k, gk), &tk) in b.keys().iter().zip(g.chunks_exact(dim)).zip(&touched) {
            if tk {
                t.read(*k, &mut row);
                let (wr, st) = row.split_at_mut(dim);
                l.optimizer.update(wr, st, gk);
                t.write(*k, &row);
            }
        }
        scores
    }

    #[test]
    fn batches_of_one_equal_online_learning() {
        for spec in
            [ModelSpec::lr(), ModelSpec { seed: 5, ..ModelSpec::fm(3) }, ModelSpec { seed: 5, ..ModelSpec::ffm(2, 3) }]
        {
            let l = Learner::new(spec, Optimizer::ftrl_default(), Loss::Logistic).unwrap();
            let (online, batched) = (l.hash_table(), l.hash_table());
            let data = [
                ex(1.0, 1.0, &[(3, 0), (7, 1), (3, 2)]),
                ex(0.0, 2.0, &[(7, 0), (9, 1)]),
                ex(1.0, 0.0, &[(11, 0), (3, 1)]),
                ex(0.0, 1.0, &[]),
                ex(1.0, 1.0, &[(9, 2), (3, 0), (7, 1), (9, 2)]),
            ];
            let (mut ls, mut bs) = (LearnScratch::default(), BatchScratch::default());
            let mut b = MiniBatch::new();
            for _ in 0..3 {
                for e in &data {
                    let so = l.learn(&online, e, &mut ls);
                    b.clear();
                    b.push(e);
                    b.seal();
                    let sb = batch_step(&l, &batched, &b, &mut bs);
                    assert_eq!(sb, vec![so]);
                }
            }
            let (mut ra, mut rb) = (Vec::new(), Vec::new());
            online.for_each_row(&mut |k, r| ra.push((k, r.to_vec())));
            batched.for_each_row(&mut |k, r| rb.push((k, r.to_vec())));
            assert_eq!(ra, rb);
            assert!(!ra.iter().any(|(k, _)| *k == 11), "a weight-0 example must not create rows");
        }
    }

    #[test]
    fn radix_sort_matches_the_comparison_sort() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (n, mask) in [(100, u64::MAX), (5000, (1 << 20) - 1), (5000, u64::MAX), (3000, 0xff00), (2000, 0)] {
            let mut pairs: Vec<(u64, u32)> = (0..n).map(|i| (next() & mask, i)).collect();
            let mut want = pairs.clone();
            want.sort_unstable();
            let mut tmp = Vec::new();
            assert_eq!(sort_pairs(&mut pairs, &mut tmp), &want[..], "n {n} mask {mask:x}");
        }
    }

    #[test]
    fn seal_dedups_and_maps_occurrences() {
        let mut b = MiniBatch::new();
        b.push(&ex(1.0, 1.0, &[(9, 0), (2, 0)]));
        b.push(&ex(0.0, 1.0, &[(2, 0), (5, 0), (9, 0)]));
        b.seal();
        assert_eq!(b.keys(), &[2, 5, 9]);
        assert_eq!(b.slots, vec![2, 0, 0, 1, 2]);
        let (mut k, mut g) = (Vec::new(), Vec::new());
        let pushed = compact_touched(b.keys(), &[1.0, 2.0, 3.0], &[true, false, true], 1, &mut k, &mut g);
        assert_eq!(pushed, (&[2, 9][..], &[1.0, 3.0][..]));
        let all = compact_touched(b.keys(), &[1.0, 2.0, 3.0], &[true; 3], 1, &mut k, &mut g);
        assert_eq!(all, (&[2, 5, 9][..], &[1.0, 2.0, 3.0][..]));
    }

    #[test]
    fn batch_scores_match_predictions() {
        let l = Learner::new(ModelSpec { seed: 1, ..ModelSpec::fm(2) }, Optimizer::adagrad_default(), Loss::Logistic)
            .unwrap();
        let t = l.hash_table();
        let mut b = MiniBatch::new();
        let data = [ex(1.0, 1.0, &[(1, 0), (2, 0)]), ex(0.0, 1.0, &[(2, 0), (4, 0)])];
        for e in &data {
            b.push(e);
        }
        b.seal();
        let mut w = vec![0f32; b.keys().len() * 3];
        let mut row = vec![0f32; l.row_len()];
        for (k, out) in b.keys().iter().zip(w.chunks_exact_mut(3)) {
            t.read(*k, &mut row);
            out.copy_from_slice(&row[..3]);
        }
        let mut got = Vec::new();
        l.batch_scores(&b, &w, &mut BatchScratch::default(), |s, _, _| got.push(s));
        let mut ls = LearnScratch::default();
        let want: Vec<f32> = data.iter().map(|e| l.score(&t, e, &mut ls)).collect();
        assert_eq!(got, want);
    }
}
