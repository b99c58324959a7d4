//! A table's rows on one server: a collisionless hash map per owned virtual shard.
//!
//! Each virtual shard keeps its rows packed in a [`RowMap`] (rows and keys dense, an
//! open-addressing index of row numbers), under its own lock, so concurrent connections rarely contend and a shard can be
//! written to or read from a checkpoint as a unit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use starling_core::optim::RowRule;
use starling_core::table::Table;
use starling_core::{Optimizer, RowMap};

use crate::shard::{vshard_of, NUM_VSHARDS};
use crate::table::TableSpec;

/// Batches at least this large are grouped by virtual shard before the lookups (measured with
/// `bench/ps_throughput.sh`: below it the per-key path is as fast).
const GROUP_MIN_KEYS: usize = 2048;

/// Key positions grouped by virtual shard; one per thread, reused across requests.
#[derive(Default)]
struct Groups {
    /// Virtual shard of each key.
    vshard: Vec<u16>,
    /// Keys with their positions, shard by shard: the lookups then read memory in order.
    order: Vec<(u64, u32)>,
    /// `order[starts[v]..starts[v + 1]]` are the positions of shard `v`'s keys.
    starts: Vec<u32>,
}

impl Groups {
    fn fill(&mut self, keys: &[u64]) {
        let n = NUM_VSHARDS as usize;
        let Groups { vshard, order, starts } = self;
        starts.clear();
        starts.resize(n + 1, 0);
        vshard.clear();
        // Shards and their sizes in one pass over the keys.
        vshard.extend(keys.iter().map(|&k| {
            let v = vshard_of(k) as usize;
            starts[v + 1] += 1;
            v as u16
        }));
        for v in 0..n {
            starts[v + 1] += starts[v];
        }
        order.resize(keys.len(), (0, 0));
        // `next[v]` is where shard v's next position goes; `starts[..n]` doubles as it and is
        // restored from the shifted ends afterwards.
        for (i, &v) in vshard.iter().enumerate() {
            let at = &mut starts[v as usize];
            order[*at as usize] = (keys[i], i as u32);
            *at += 1;
        }
        starts.copy_within(0..n, 1);
        starts[0] = 0;
    }
}

thread_local! {
    static GROUPS: RefCell<Groups> = RefCell::default();
}

/// Rows of one virtual shard.
type VShard = RowMap;

/// A push's row loop, generic over the update rule ([`Optimizer::with_rule`]).
struct PushRows<'a> {
    store: &'a Store,
    keys: &'a [u64],
    grads: &'a [f32],
    dim: usize,
}

impl RowRule for PushRows<'_> {
    type Out = Result<(), u64>;

    #[inline(always)]
    fn run<R: Fn(&mut [f32], &mut [f32], &[f32])>(self, rule: R) -> Result<(), u64> {
        let PushRows { store, keys, grads, dim } = self;
        store.for_each_group(keys, |shard, at| {
            for &(key, i) in at {
                let i = i as usize;
                let row = shard.get_or_insert_with(key, |r| store.spec.fill(key, r));
                let (w, state) = row.split_at_mut(dim);
                rule(w, state, &grads[i * dim..(i + 1) * dim]);
            }
        })
    }
}

/// One table's rows over the virtual shards this server owns.
pub struct Store {
    spec: TableSpec,
    row_len: usize,
    /// Indexed by virtual shard; `None` for shards owned elsewhere.
    shards: Box<[Option<Mutex<VShard>>]>,
    /// The step size rises linearly over this many steps (0: no warm-up).
    warmup: AtomicU64,
    /// Pushes applied so far (counted only during a warm-up).
    pushes: AtomicU64,
    /// Pushes that make one step: the workers, or 1 for a synchronous table's rounds.
    per_step: AtomicU64,
    /// Factor on the table's step size (an `f32`'s bits): a schedule's decay.
    lr_scale: AtomicU32,
}

impl Store {
    /// An empty store of `spec`'s rows owning the virtual shards `owned`.
    pub fn new(spec: TableSpec, owned: &[u32]) -> Self {
        let mut shards: Vec<Option<Mutex<VShard>>> = (0..NUM_VSHARDS).map(|_| None).collect();
        let row_len = spec.row_len();
        for &v in owned {
            shards[v as usize] = Some(Mutex::new(RowMap::new(row_len)));
        }
        Store {
            spec,
            row_len,
            shards: shards.into_boxed_slice(),
            warmup: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            per_step: AtomicU64::new(1),
            lr_scale: AtomicU32::new(1f32.to_bits()),
        }
    }

    /// Multiplies the table's step size by `factor` from the next push on (a decay on plateau).
    pub fn scale_lr(&self, factor: f32) {
        let now = f32::from_bits(self.lr_scale.load(Ordering::Relaxed));
        self.lr_scale.store((now * factor).to_bits(), Ordering::Relaxed);
    }

    /// Warms the step size up over `steps` steps (0: off), of which `done` are behind (a resumed
    /// job), counting `per_step` pushes as one step.
    pub fn set_warmup(&self, steps: u64, done: u64, per_step: u64) {
        let per_step = per_step.max(1);
        self.per_step.store(per_step, Ordering::Relaxed);
        self.pushes.store(done.saturating_mul(per_step), Ordering::Relaxed);
        self.warmup.store(steps, Ordering::Relaxed);
    }

    /// The table's rule for the next push: its step size times the decay so far and, during a
    /// warm-up, `(step + 1) / warmup`, counting the pushes applied so far.
    #[inline]
    fn rule(&self) -> Optimizer {
        let mut opt = self.spec.optimizer;
        let scale = f32::from_bits(self.lr_scale.load(Ordering::Relaxed));
        if scale != 1.0 {
            opt.scale_lr(scale);
        }
        let warmup = self.warmup.load(Ordering::Relaxed);
        if warmup > 0 {
            let step = self.pushes.load(Ordering::Relaxed) / self.per_step.load(Ordering::Relaxed);
            if step < warmup {
                opt.scale_lr((step + 1) as f32 / warmup as f32);
            }
        }
        opt
    }

    /// A store owning every virtual shard: the whole table in one process.
    pub fn whole(spec: TableSpec) -> Self {
        let all: Vec<u32> = (0..NUM_VSHARDS).collect();
        Self::new(spec, &all)
    }

    /// The table's spec.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// True when this store owns `key`'s virtual shard.
    #[inline]
    pub fn owns(&self, key: u64) -> bool {
        self.shards[vshard_of(key) as usize].is_some()
    }

    /// True when this store owns virtual shard `v`.
    pub fn owns_vshard(&self, v: u32) -> bool {
        self.shards.get(v as usize).is_some_and(|s| s.is_some())
    }

    #[inline]
    fn lock(&self, v: u32) -> Option<MutexGuard<'_, VShard>> {
        // A panic cannot leave a row half-updated in a way later reads would misinterpret, so a
        // poisoned lock is still usable.
        self.shards[v as usize].as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Calls `f` with each owned virtual shard touched by `keys` and its keys with their positions,
    /// locking each shard once. Large batches are grouped by shard first (a counting sort), so
    /// the lookups of one shard run together while its map and rows are in cache; small ones go
    /// key by key, where the grouping would cost more than it saves. Every key's shard is checked
    /// before `f` is first called: if any is not owned here, a key of such a shard is returned
    /// and nothing is visited.
    fn for_each_group(&self, keys: &[u64], mut f: impl FnMut(&mut VShard, &[(u64, u32)])) -> Result<(), u64> {
        if keys.len() < GROUP_MIN_KEYS {
            if let Some(&key) = keys.iter().find(|&&k| !self.owns(k)) {
                return Err(key);
            }
            for (i, &key) in keys.iter().enumerate() {
                let mut shard = self.lock(vshard_of(key)).ok_or(key)?;
                f(&mut shard, &[(key, i as u32)]);
            }
            return Ok(());
        }
        GROUPS.with_borrow_mut(|g| {
            g.fill(keys);
            for v in 0..NUM_VSHARDS as usize {
                if g.starts[v] < g.starts[v + 1] && self.shards[v].is_none() {
                    return Err(g.order[g.starts[v] as usize].0);
                }
            }
            for v in 0..NUM_VSHARDS as usize {
                let at = &g.order[g.starts[v] as usize..g.starts[v + 1] as usize];
                if let Some(&(first, _)) = at.first() {
                    let mut shard = self.lock(v as u32).ok_or(first)?;
                    f(&mut shard, at);
                }
            }
            Ok(())
        })
    }

    /// Copies the weights (`dim` floats each) of `keys` into `out`; unknown keys give fresh
    /// weights without being stored. Returns a key this store does not own, if any.
    pub fn pull(&self, keys: &[u64], out: &mut [f32]) -> Result<(), u64> {
        let dim = self.spec.dim;
        debug_assert_eq!(out.len(), keys.len() * dim);
        self.for_each_group(keys, |shard, at| {
            for &(key, i) in at {
                let i = i as usize;
                let w = &mut out[i * dim..(i + 1) * dim];
                match shard.get(key) {
                    Some(row) if dim == 1 => w[0] = row[0],
                    Some(row) => w.copy_from_slice(&row[..dim]),
                    None => self.spec.init_weights(key, w),
                }
            }
        })
    }

    /// Applies the optimizer to the rows of `keys` with `grads` (`dim` floats each), creating
    /// fresh rows as needed. Returns a key this store does not own, if any, and then changes no row.
    pub fn push(&self, keys: &[u64], grads: &[f32]) -> Result<(), u64> {
        let dim = self.spec.dim;
        debug_assert_eq!(grads.len(), keys.len() * dim);
        // The optimizer is matched once per push, so its rule inlines into the row loop.
        self.rule().with_rule(PushRows { store: self, keys, grads, dim })?;
        // Counted once applied: a refused push is no step of a warm-up.
        if self.warmup.load(Ordering::Relaxed) > 0 {
            self.pushes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Calls `f` on every stored row of virtual shard `v` in increasing key order.
    pub fn for_each_row_in(&self, v: u32, f: &mut dyn FnMut(u64, &[f32])) {
        let Some(shard) = self.lock(v) else { return };
        let mut rows: Vec<(u64, &[f32])> = shard.iter().collect();
        rows.sort_unstable_by_key(|&(k, _)| k);
        for (k, row) in rows {
            f(k, row);
        }
    }

    /// Stored rows in virtual shard `v` (0 when not owned).
    pub fn len_in(&self, v: u32) -> usize {
        self.lock(v).map_or(0, |s| s.len())
    }

    /// Virtual shards this store owns, in increasing order.
    pub fn owned(&self) -> Vec<u32> {
        (0..NUM_VSHARDS).filter(|&v| self.owns_vshard(v)).collect()
    }
}

impl Table for Store {
    fn row_len(&self) -> usize {
        self.row_len
    }

    /// Full row (weights and state); a key of a shard not owned here reads as fresh.
    fn read(&self, key: u64, row: &mut [f32]) {
        match self.lock(vshard_of(key)).as_ref().and_then(|s| s.get(key)) {
            Some(r) => row.copy_from_slice(r),
            None => self.spec.fill(key, row),
        }
    }

    /// Stores a full row.
    ///
    /// # Panics
    /// If this store does not own `key`'s virtual shard: writing it would silently lose the row.
    fn write(&self, key: u64, row: &[f32]) {
        let v = vshard_of(key);
        let mut shard = self.lock(v).unwrap_or_else(|| panic!("key {key} is in virtual shard {v}, not owned here"));
        shard.get_or_insert_with(key, |_| {}).copy_from_slice(row);
    }

    fn len(&self) -> usize {
        (0..NUM_VSHARDS).map(|v| self.len_in(v)).sum()
    }

    fn for_each_row(&self, f: &mut dyn FnMut(u64, &[f32])) {
        // Whole-table order is by key (as the single-machine tables give), not by shard.
        let mut keys = Vec::with_capacity(self.len());
        for v in 0..NUM_VSHARDS {
            if let Some(s) = self.lock(v) {
                keys.extend_from_slice(s.keys());
            }
        }
        keys.sort_unstable();
        let mut row = vec![0f32; self.row_len];
        for key in keys {
            self.read(key, &mut row);
            f(key, &row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::{HashTable, Learner, Loss, ModelSpec, Optimizer};

    fn spec() -> TableSpec {
        TableSpec::for_model("w", &ModelSpec { seed: 4, ..ModelSpec::fm(2) }, &Optimizer::adagrad_default())
    }

    #[test]
    fn a_warm_up_raises_the_step_size_linearly_per_step() {
        let sgd = Optimizer::Sgd { lr: 1.0, l2: 0.0 };
        let s = Store::whole(TableSpec::sparse("w", 1, &sgd, crate::Init::Zeros, 0));
        // Two workers' pushes make a step; one step of four is already done (a resumed job).
        s.set_warmup(4, 1, 2);
        let mut w = [0f32];
        let mut seen = Vec::new();
        for _ in 0..8 {
            s.push(&[7], &[1.0]).unwrap();
            s.pull(&[7], &mut w).unwrap();
            seen.push(w[0]);
        }
        assert_eq!(seen, [-0.5, -1.0, -1.75, -2.5, -3.5, -4.5, -5.5, -6.5]);
    }

    #[test]
    fn a_refused_push_is_no_step_of_a_warm_up() {
        let sgd = Optimizer::Sgd { lr: 1.0, l2: 0.0 };
        let s = Store::new(TableSpec::sparse("w", 1, &sgd, crate::Init::Zeros, 0), &[vshard_of(7)]);
        let foreign = (0..).find(|&k| vshard_of(k) != vshard_of(7)).unwrap();
        s.set_warmup(4, 0, 1);
        let (mine, theirs) = if foreign < 7 { (1, 0) } else { (0, 1) };
        let mut keys = [0u64; 2];
        keys[mine] = 7;
        keys[theirs] = foreign;
        assert_eq!(s.push(&keys, &[1.0, 1.0]), Err(foreign));
        s.push(&[7], &[1.0]).unwrap();
        let mut w = [0f32];
        s.pull(&[7], &mut w).unwrap();
        assert_eq!(w[0], -0.25, "the first applied push is the warm-up's first step");
    }

    #[test]
    fn pull_gives_fresh_weights_without_storing() {
        let s = Store::whole(spec());
        let mut out = vec![0f32; 3 * 3];
        s.pull(&[1, 2, 3], &mut out).unwrap();
        let mut w = [0f32; 3];
        spec().init_weights(2, &mut w);
        assert_eq!(&out[3..6], &w);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn push_applies_the_same_rule_as_the_single_machine_path() {
        let learner =
            Learner::new(ModelSpec { seed: 4, ..ModelSpec::fm(2) }, Optimizer::adagrad_default(), Loss::Logistic)
                .unwrap();
        let table = HashTable::new(learner.row_len(), learner.row_init());
        let s = Store::whole(spec());
        let g = [0.5f32, -0.25, 0.125];
        for _ in 0..3 {
            s.push(&[10, 20], &[g, g].concat()).unwrap();
            for key in [10, 20] {
                let mut row = vec![0f32; learner.row_len()];
                table.read(key, &mut row);
                let (w, st) = row.split_at_mut(3);
                learner.optimizer.update(w, st, &g);
                table.write(key, &row);
            }
        }
        let (mut a, mut b) = (vec![0f32; 6], vec![0f32; 6]);
        for key in [10, 20] {
            s.read(key, &mut a);
            table.read(key, &mut b);
            assert_eq!(a, b);
        }
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn refuses_keys_it_does_not_own() {
        let owned: Vec<u32> = (0..NUM_VSHARDS / 2).collect();
        let s = Store::new(spec(), &owned);
        let foreign = (0..).find(|&k| !s.owns(k)).unwrap();
        let mut out = vec![0f32; 3];
        assert_eq!(s.pull(&[foreign], &mut out), Err(foreign));
        assert_eq!(s.push(&[foreign], &[0.0; 3]), Err(foreign));
    }

    #[test]
    fn large_batches_grouped_by_shard_match_key_by_key_reads() {
        let s = Store::whole(spec());
        let keys: Vec<u64> = (0..3 * GROUP_MIN_KEYS as u64).map(|k| k * 104_729 + 3).collect();
        let grads: Vec<f32> = (0..keys.len() * 3).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        s.push(&keys, &grads).unwrap();
        let mut pulled = vec![0f32; keys.len() * 3];
        s.pull(&keys, &mut pulled).unwrap();
        let mut row = [0f32; 6];
        let mut fresh = [0f32; 6];
        for (i, &key) in keys.iter().enumerate() {
            s.read(key, &mut row);
            assert_eq!(&pulled[i * 3..i * 3 + 3], &row[..3], "key {key}");
            spec().fill(key, &mut fresh);
            let (w, st) = fresh.split_at_mut(3);
            spec().optimizer.update(w, st, &grads[i * 3..i * 3 + 3]);
            assert_eq!(row, fresh, "key {key}");
        }
        let half = Store::new(spec(), &(0..NUM_VSHARDS / 2).collect::<Vec<_>>());
        let foreign = half.pull(&keys, &mut pulled).unwrap_err();
        assert!(!half.owns(foreign) && keys.contains(&foreign));
    }

    #[test]
    fn rows_iterate_in_key_order_per_shard_and_overall() {
        let s = Store::whole(spec());
        let keys: Vec<u64> = (0..500).map(|k| k * 7919).collect();
        s.push(&keys, &vec![0.1; keys.len() * 3]).unwrap();
        let mut all = Vec::new();
        s.for_each_row(&mut |k, _| all.push(k));
        assert_eq!(all, keys);
        let mut per_shard = 0;
        for v in s.owned() {
            let mut last = None;
            s.for_each_row_in(v, &mut |k, r| {
                assert_eq!(vshard_of(k), v);
                assert_eq!(r.len(), 6);
                assert!(last < Some(k));
                last = Some(k);
                per_shard += 1;
            });
        }
        assert_eq!(per_shard, 500);
    }
}
