//! Rows that many examples write (the bias, numeric features, the common values of each field),
//! kept by each Hogwild thread to itself and merged into the shared table at intervals.
//!
//! A row one core wrote is no longer in the other core's cache: when both threads write it every
//! few hundred examples, what would have been a cache hit becomes a transfer between the cores
//! (about a DRAM miss). On Criteo-like data about 90% of an example's rows belong to keys found in
//! at least one example in four thousand, and two threads learned only about as fast as one. A thread
//! first learns [`WARMUP`] examples straight into the table while counting how often each key is
//! written; the keys written in at least one example in [`HOT_SHARE`] then get a private working
//! copy. Every [`MERGE_EVERY`] examples the thread adds what it changed in each copy (working row
//! minus the row it last merged) to the shared row and takes the sum as its new copy: one transfer
//! per row and merge instead of one per write. The threads see each other's updates to these rows
//! up to a merge interval late, the staleness that mini-batching would add, confined to the rows
//! where it buys speed. One thread never needs this. FTRL's weights are a function of its z and n,
//! not a sum: a merged weight is off from that function until the row's next update recomputes it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::table::{KeyMap, Table};

/// Examples a thread learns straight into the table while it counts which keys are hot.
pub const WARMUP: u64 = 16384;
/// A key is hot when it was written in at least `1 / HOT_SHARE` of the warm-up examples.
pub const HOT_SHARE: u64 = 4096;
/// Examples between merges of a thread's hot rows into the shared table.
pub const MERGE_EVERY: u64 = 16384;
/// Most slots of the private cache; fewer for long rows, so that its rows stay in the core's L2.
const MAX_SLOTS: usize = 32768;
/// Fewest slots, whatever the row length.
const MIN_SLOTS: usize = 256;
/// Bytes of private rows to aim for.
const ROW_BYTES: usize = 1 << 20;

/// A table seen by one thread of several: its hot rows private, the rest shared. `len` and
/// `for_each_row` describe the shared table as it is, without any thread's unmerged changes.
/// Only for optimizers whose updates add up ([`crate::Optimizer::merges_by_delta`]): the merge
/// adds each thread's change to a row, so state that decays (Adam's moments) would be taken back
/// once per thread.
///
/// The private rows sit in a direct-mapped cache indexed by the key's low bits (keys are hashes,
/// or ids whose low bits differ): a row's lookup is one load and compare, cheap enough to sit on
/// every row of every example. Of two hot keys that share a slot, the commoner is private.
pub struct HotRows<'a, T: Table + ?Sized> {
    table: &'a T,
    examples: u64,
    phase: Phase,
    /// `slot_keys[s]` is the key private in slot `s`, or, when none is, a key of another slot.
    slot_keys: Box<[u64]>,
    /// `slot_keys.len() - 1`.
    mask: usize,
    /// Working row of slot `s` at `[s * row_len ..][.. row_len]`; atomics only because a
    /// `Table` is `Sync` (relaxed loads and stores compile to plain moves).
    rows: Box<[AtomicU32]>,
    /// The shared row as this thread last merged it, laid out as `rows`.
    base: Box<[f32]>,
    /// Slots in use, commonest key first.
    used: Vec<usize>,
    /// Room for one shared row during a merge.
    shared: Vec<f32>,
}

/// Where a thread's [`HotRows`] stands.
enum Phase {
    /// Learning straight into the table, counting in how many examples each key was written.
    Counting(Mutex<KeyMap<u64>>),
    /// The hot rows chosen (maybe none) and held privately.
    Private,
}

impl<'a, T: Table + ?Sized> HotRows<'a, T> {
    /// One thread's view of `table`, counting its first examples.
    pub fn new(table: &'a T) -> Self {
        let row_len = table.row_len();
        // Rounded down to a power of two, so the rows stay within ROW_BYTES.
        let slots = 1 << (ROW_BYTES / (4 * row_len)).clamp(MIN_SLOTS, MAX_SLOTS).ilog2();
        HotRows {
            table,
            examples: 0,
            phase: Phase::Counting(Mutex::new(KeyMap::default())),
            slot_keys: (0..slots).map(|s| vacant(s, slots - 1)).collect(),
            mask: slots - 1,
            rows: (0..slots * row_len).map(|_| AtomicU32::new(0)).collect(),
            base: vec![0.0; slots * row_len].into_boxed_slice(),
            used: Vec::new(),
            shared: vec![0.0; row_len],
        }
    }

    /// Call after each example learned: chooses the hot rows at the end of the warm-up and merges
    /// them every [`MERGE_EVERY`] examples after.
    #[inline]
    pub fn end_example(&mut self) {
        self.examples += 1;
        match &mut self.phase {
            Phase::Counting(counts) if self.examples == WARMUP => {
                let counts = std::mem::take(counts.get_mut().unwrap_or_else(|e| e.into_inner()));
                self.phase = Phase::Private;
                self.choose(counts);
            }
            Phase::Private if self.examples.is_multiple_of(MERGE_EVERY) => self.merge(),
            _ => {}
        }
    }

    /// Keys this thread keeps privately, commonest first (none until the warm-up ends).
    pub fn hot_keys(&self) -> Vec<u64> {
        self.used.iter().map(|&s| self.slot_keys[s]).collect()
    }

    /// Makes private the keys of `counts` written in at least `1 / HOT_SHARE` of the warm-up,
    /// with working copies of their rows from the table.
    fn choose(&mut self, counts: KeyMap<u64>) {
        let mut hot: Vec<(u64, u64)> = counts.into_iter().filter(|&(_, n)| n * HOT_SHARE >= WARMUP).collect();
        // Commonest first, ties by key: which rows are private does not depend on hash order.
        hot.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let row_len = self.shared.len();
        for (key, _) in hot {
            let s = key as usize & self.mask;
            if self.slot_keys[s] & self.mask as u64 != s as u64 {
                // Vacant: its key belongs to another slot.
                self.slot_keys[s] = key;
                self.used.push(s);
                let base = &mut self.base[s * row_len..(s + 1) * row_len];
                self.table.read(key, base);
                for (w, &b) in self.rows[s * row_len..].iter().zip(base.iter()) {
                    w.store(b.to_bits(), Ordering::Relaxed);
                }
            }
        }
    }

    /// The slot of `key` if it is private.
    #[inline(always)]
    fn private(&self, key: u64) -> Option<usize> {
        let s = key as usize & self.mask;
        (self.slot_keys[s] == key).then_some(s)
    }

    #[inline(always)]
    fn row(&self, s: usize, row_len: usize) -> &[AtomicU32] {
        &self.rows[s * row_len..(s + 1) * row_len]
    }

    /// Adds what this thread changed in each hot row since the last merge to the shared row and
    /// takes the result, which holds the other threads' changes too, as the new working row.
    fn merge(&mut self) {
        let row_len = self.shared.len();
        for (i, &s) in self.used.iter().enumerate() {
            // The shared rows are mostly in the other core's cache: overlap those transfers.
            if let Some(&ahead) = self.used.get(i + 8) {
                self.table.prefetch(self.slot_keys[ahead]);
            }
            let key = self.slot_keys[s];
            let work = &self.rows[s * row_len..(s + 1) * row_len];
            let base = &mut self.base[s * row_len..(s + 1) * row_len];
            let changed = work.iter().zip(base.iter()).any(|(w, b)| w.load(Ordering::Relaxed) != b.to_bits());
            self.table.read(key, &mut self.shared);
            if changed {
                for ((sh, w), b) in self.shared.iter_mut().zip(work).zip(base.iter()) {
                    *sh += f32::from_bits(w.load(Ordering::Relaxed)) - b;
                }
                self.table.write(key, &self.shared);
            }
            for ((w, b), &sh) in work.iter().zip(base.iter_mut()).zip(&self.shared) {
                w.store(sh.to_bits(), Ordering::Relaxed);
                *b = sh;
            }
        }
    }
}

/// The key a vacant slot `s` holds: one of the next slot, so that no key looked up in `s` matches.
fn vacant(s: usize, mask: usize) -> u64 {
    ((s + 1) & mask) as u64
}

impl<T: Table + ?Sized> Drop for HotRows<'_, T> {
    /// A thread's last changes to its hot rows reach the table however its learning ended.
    fn drop(&mut self) {
        self.merge();
    }
}

impl<T: Table + ?Sized> Table for HotRows<'_, T> {
    #[inline(always)]
    fn row_len(&self) -> usize {
        self.table.row_len()
    }

    #[inline(always)]
    fn read(&self, key: u64, row: &mut [f32]) {
        match self.private(key) {
            Some(s) => {
                let row_len = row.len();
                for (d, w) in row.iter_mut().zip(self.row(s, row_len)) {
                    *d = f32::from_bits(w.load(Ordering::Relaxed));
                }
            }
            None => self.table.read(key, row),
        }
    }

    #[inline(always)]
    fn write(&self, key: u64, row: &[f32]) {
        match self.private(key) {
            Some(s) => {
                for (d, v) in self.row(s, row.len()).iter().zip(row) {
                    d.store(v.to_bits(), Ordering::Relaxed);
                }
            }
            None => {
                if let Phase::Counting(counts) = &self.phase {
                    *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(0) += 1;
                }
                self.table.write(key, row);
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, key: u64) {
        if self.private(key).is_none() {
            self.table.prefetch(key);
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn for_each_row(&self, f: &mut dyn FnMut(u64, &[f32])) {
        self.table.for_each_row(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Init;
    use crate::table::{DenseTable, RowInit};

    fn table() -> DenseTable {
        DenseTable::new(10, 2, RowInit::with(Init::Zeros, 1, 2))
    }

    /// Writes `[n, n]` to `key` through `hot` (reading it first, as learning does).
    fn bump(hot: &HotRows<'_, DenseTable>, key: u64) {
        let mut row = [0f32; 2];
        hot.read(key, &mut row);
        hot.write(key, &[row[0] + 1.0, row[1] + 1.0]);
    }

    #[test]
    fn only_keys_common_in_the_warmup_become_private() {
        let t = table();
        let mut hot = HotRows::new(&t);
        for e in 0..WARMUP {
            bump(&hot, 1);
            if e % HOT_SHARE == 0 {
                bump(&hot, 2);
            }
            if e % (HOT_SHARE * 2) == 0 {
                bump(&hot, 3);
            }
            hot.end_example();
        }
        assert_eq!(hot.hot_keys(), [1, 2]);
    }

    #[test]
    fn every_change_of_two_threads_reaches_the_table() {
        // Two threads' views, stepped in turn on one thread so that no write races another: the
        // sum must then be exact (real threads may lose updates to each other, as Hogwild does).
        let t = table();
        let (mut a, mut b) = (HotRows::new(&t), HotRows::new(&t));
        let examples = WARMUP + 3 * MERGE_EVERY + 17;
        for _ in 0..examples {
            for hot in [&mut a, &mut b] {
                bump(hot, 7);
                hot.end_example();
            }
        }
        assert_eq!((a.hot_keys(), b.hot_keys()), (vec![7], vec![7]));
        drop((a, b));
        let mut row = [0f32; 2];
        t.read(7, &mut row);
        assert_eq!(row, [2.0 * examples as f32; 2]);
    }

    #[test]
    fn a_private_row_sees_the_other_threads_changes_at_the_next_merge() {
        let t = table();
        let mut hot = HotRows::new(&t);
        for _ in 0..WARMUP {
            bump(&hot, 5);
            hot.end_example();
        }
        let mut row = [0f32; 2];
        // Another thread's change to the shared row...
        t.write(5, &[100.0, 100.0]);
        hot.read(5, &mut row);
        assert_eq!(row, [WARMUP as f32; 2], "...is not seen before the merge");
        for _ in 0..MERGE_EVERY {
            bump(&hot, 5);
            hot.end_example();
        }
        hot.read(5, &mut row);
        assert_eq!(row, [100.0 + MERGE_EVERY as f32; 2]);
        bump(&hot, 5);
        drop(hot);
        t.read(5, &mut row);
        assert_eq!(row, [101.0 + MERGE_EVERY as f32; 2], "dropping merges the last changes");
    }
}
