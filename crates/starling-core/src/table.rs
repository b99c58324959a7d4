//! In-memory tables of one machine, shared by Hogwild-style threads.
//!
//! A row is `[weights (dim) | optimizer state]`, `row_len` f32 in all. A key never written reads as
//! its fresh row (weights from [`ModelSpec::init_weights`], state zeros) without being stored, so
//! scoring unseen keys neither grows the table nor depends on which thread touched a key first.

use std::alloc::{alloc_zeroed, Layout};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::hash::mix64;
use crate::model::{Init, ModelSpec};
use crate::rowmap::RowMap;

/// Key-value store of rows; `Sync` so threads can train into one table at once.
pub trait Table: Sync {
    /// Floats per row (weights then optimizer state).
    fn row_len(&self) -> usize;
    /// Copies the row of `key` into `row` (`row_len` floats); a never-written key gives its fresh row.
    fn read(&self, key: u64, row: &mut [f32]);
    /// Stores `row` (`row_len` floats) as the row of `key`.
    fn write(&self, key: u64, row: &[f32]);
    /// Hints that `key` will be read soon, so callers can overlap the cache misses of a whole
    /// example; a no-op unless the table can address a row without a lookup.
    #[inline(always)]
    fn prefetch(&self, _key: u64) {}
    /// Rows written at least once.
    fn len(&self) -> usize;
    /// True when no row has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` on every written row in increasing key order, so saved models are deterministic.
    fn for_each_row(&self, f: &mut dyn FnMut(u64, &[f32]));
}

/// Writes every row of `from` into `to` (rows of the same length).
pub fn copy_rows(from: &dyn Table, to: &dyn Table) {
    from.for_each_row(&mut |key, row| to.write(key, row));
}

/// How a fresh row looks: the table's init for the weights, zeros for the optimizer state.
#[derive(Clone, Debug, PartialEq)]
pub struct RowInit {
    init: Init,
    dim: usize,
    row_len: usize,
}

impl RowInit {
    /// Fresh rows of `row_len` floats for the shallow model `spec` (`row_len >= spec.dim()`).
    pub fn new(spec: &ModelSpec, row_len: usize) -> Self {
        RowInit::with(Init::Model(spec.clone()), spec.dim(), row_len)
    }

    /// Fresh rows of `row_len` floats whose first `dim` follow `init`.
    pub fn with(init: Init, dim: usize, row_len: usize) -> Self {
        assert!(row_len >= dim, "row_len {row_len} < dim {dim}");
        RowInit { init, dim, row_len }
    }

    /// Weights per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Floats per row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// True when a fresh row is all zeros (LR, or zero init scale): zeroed memory is then a valid fresh row.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.init.is_zero()
    }

    /// Writes the fresh row of `key` into `row`.
    #[inline]
    pub fn fill(&self, key: u64, row: &mut [f32]) {
        debug_assert_eq!(row.len(), self.row_len);
        let (w, state) = row.split_at_mut(self.dim);
        self.init.fill_weights(key, w);
        state.fill(0.0);
    }
}

/// A boxed slice of `n` zero-valued `T` from `alloc_zeroed`, so the OS hands out pages lazily and
/// a 2^28-row table costs nothing until rows are written.
///
/// # Safety
/// All-zero bytes must be a valid `T` (true for the atomic integers used here).
unsafe fn zeroed_slice<T>(n: usize) -> Option<Box<[T]>> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Some(Vec::new().into_boxed_slice());
    }
    let layout = Layout::array::<T>(n).ok()?;
    // SAFETY: layout has non-zero size; zeroed bytes are a valid T per the caller's contract, and
    // Box<[T]> frees with the same layout (Global allocator, array of n T).
    unsafe {
        let p = alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            return None;
        }
        advise_huge_pages(p as *mut u8, layout.size());
        Some(Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)))
    }
}

/// Asks the kernel to back `len` bytes at `p` with transparent huge pages when the block is large
/// but not huge.
///
/// A table's rows are touched at random: with 4 KiB pages nearly every row of a large table
/// misses the TLB as well as the cache, a page walk the row prefetch cannot hide, and every first
/// touch is a page fault. 2 MiB pages cut both by 512x. Linux only commits a huge page where a
/// row in it is written, so a sparse table can commit more memory than with small pages, never
/// more than the table's size.
fn advise_huge_pages(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        // Above this, huge pages cost more than they save: every 2 MiB page a row lands in is
        // committed and zeroed whole, and the kernel compacts memory to find them (measured: FM
        // k=8 on 2^24 rows, a 1.2 GiB table, trained at 0.73x with them; LR's 128 MiB at 1.3x).
        const HUGE_UP_TO: usize = 256 << 20;
        if (HUGE..=HUGE_UP_TO).contains(&len) {
            // madvise takes whole pages: the allocator's block may start past a page boundary.
            let start = (p as usize).next_multiple_of(4096);
            let end = (p as usize + len) & !4095;
            if end > start {
                // SAFETY: madvise only changes how the kernel backs pages of this live allocation;
                // MADV_HUGEPAGE never changes their contents. A failure (THP off) is harmless.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
}

/// Direct-indexed table over keys `< 2^bits` (keys folded by the pipeline): the fastest store,
/// lock-free, with racy-but-defined Hogwild reads and writes (relaxed atomics compile to plain moves).
pub struct DenseTable {
    bits: u32,
    mask: u64,
    row_len: usize,
    init: RowInit,
    zero_init: bool,
    /// f32 bits of row `k` at `data[k * row_len ..][.. row_len]`.
    data: Box<[AtomicU32]>,
    /// Bit `k` set once row `k` has been written; also the count of rows written, so that no
    /// counter shared by every thread is bumped for each fresh row.
    touched: Box<[AtomicU64]>,
}

/// Largest supported `bits`: 2^40 rows is already 4 TiB per float of row.
pub const MAX_DENSE_BITS: u32 = 40;

impl DenseTable {
    /// A table of `2^bits` rows of `row_len` floats, fresh rows shaped by `init`. Memory is reserved
    /// zeroed and only committed by the OS as rows are written. Panics if `bits > MAX_DENSE_BITS`,
    /// `row_len != init.row_len()`, or the memory cannot be had ([`DenseTable::try_new`] says so instead).
    pub fn new(bits: u32, row_len: usize, init: RowInit) -> Self {
        Self::try_new(bits, row_len, init).expect("DenseTable: the allocator refused the table's memory")
    }

    /// [`DenseTable::new`], or `None` when the allocator refuses the memory (or its size overflows).
    pub fn try_new(bits: u32, row_len: usize, init: RowInit) -> Option<Self> {
        assert!(bits <= MAX_DENSE_BITS, "DenseTable: bits {bits} > {MAX_DENSE_BITS}");
        assert_eq!(row_len, init.row_len(), "DenseTable: row_len differs from RowInit's");
        assert!(row_len > 0, "DenseTable: row_len must be > 0");
        let rows = 1usize << bits;
        let n = rows.checked_mul(row_len)?;
        // SAFETY: zero bits are a valid AtomicU32 / AtomicU64.
        let data = unsafe { zeroed_slice::<AtomicU32>(n) }?;
        let touched = unsafe { zeroed_slice::<AtomicU64>(rows.div_ceil(64)) }?;
        Some(DenseTable { bits, mask: (rows as u64) - 1, row_len, zero_init: init.is_zero(), init, data, touched })
    }

    /// Key bits this table was built for.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Forgets every row, as a new table with `init` would be, keeping the memory: only the rows
    /// written are zeroed. Reusing one table for run after run (hyperparameter trials) spares the
    /// page faults and unmapping of a fresh allocation, which contend across threads.
    /// Panics if `init.row_len()` differs from this table's rows.
    pub fn clear(&mut self, init: RowInit) {
        assert_eq!(self.row_len, init.row_len(), "DenseTable::clear: row_len differs from RowInit's");
        for (wi, word) in self.touched.iter_mut().enumerate() {
            let mut bits = *word.get_mut();
            while bits != 0 {
                let k = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for w in &mut self.data[k * self.row_len..(k + 1) * self.row_len] {
                    *w.get_mut() = 0;
                }
            }
            *word.get_mut() = 0;
        }
        self.zero_init = init.is_zero();
        self.init = init;
    }

    /// Rows addressable (`2^bits`).
    pub fn capacity(&self) -> usize {
        1usize << self.bits
    }

    #[inline(always)]
    fn index(&self, key: u64) -> usize {
        debug_assert!(key <= self.mask, "key {key} does not fit DenseTable of {} bits", self.bits);
        (key & self.mask) as usize
    }

    #[inline(always)]
    fn is_touched(&self, k: usize, order: Ordering) -> bool {
        self.touched[k >> 6].load(order) & (1u64 << (k & 63)) != 0
    }

    /// Kept out of line so the common path of `read` stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn fill_fresh(&self, k: usize, row: &mut [f32]) {
        self.init.fill(k as u64, row);
    }
}

/// Pulls the cache line holding `p` towards L1; a hint that never faults.
#[inline(always)]
fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is only a hint; it never dereferences architecturally nor faults.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Table for DenseTable {
    #[inline]
    fn row_len(&self) -> usize {
        self.row_len
    }

    #[inline]
    fn read(&self, key: u64, row: &mut [f32]) {
        let k = self.index(key);
        // Acquire pairs with the Release in `write`, so a row seen as touched is seen written.
        if !self.zero_init && !self.is_touched(k, Ordering::Acquire) {
            self.fill_fresh(k, row);
            return;
        }
        let src = &self.data[k * self.row_len..(k + 1) * self.row_len];
        for (d, s) in row.iter_mut().zip(src) {
            *d = f32::from_bits(s.load(Ordering::Relaxed));
        }
    }

    #[inline]
    fn write(&self, key: u64, row: &[f32]) {
        let k = self.index(key);
        let dst = &self.data[k * self.row_len..(k + 1) * self.row_len];
        // Stored words start at 0 whatever the init, so any non-zero old word proves the row was
        // written before and its touched bit set: warm rows (just read, so in L1) then skip the
        // bitset, a random access into `2^bits / 8` bytes.
        let mut old = 0u32;
        for (d, s) in dst.iter().zip(row) {
            old |= d.load(Ordering::Relaxed);
            d.store(s.to_bits(), Ordering::Relaxed);
        }
        // A plain load first: the locked fetch_or is paid once per row, not once per write.
        if old == 0 && !self.is_touched(k, Ordering::Relaxed) {
            self.touched[k >> 6].fetch_or(1u64 << (k & 63), Ordering::Release);
        }
    }

    #[inline(always)]
    fn prefetch(&self, key: u64) {
        let k = (key & self.mask) as usize;
        let start = self.data.as_ptr().wrapping_add(k * self.row_len) as usize;
        let bytes = self.row_len * std::mem::size_of::<f32>();
        // One hint per cache line the row spans: a core has only about ten line-fill buffers,
        // and a hint issued while they are all busy stalls the loop.
        let mut line = start & !63;
        let last = (start + bytes - 1) & !63;
        loop {
            prefetch_line(line as *const u8);
            if line >= last {
                break;
            }
            line += 64;
        }
        // `read` of a non-zero-init row consults the touched bit first, and `write` of a fresh row
        // does: without the hint each new key costs a cache and TLB miss into the bitset.
        prefetch_line(self.touched.as_ptr().wrapping_add(k >> 6));
    }

    /// Counts the touched bits: a scan of `2^bits / 8` bytes, done when a model is saved.
    fn len(&self) -> usize {
        self.touched.iter().map(|w| w.load(Ordering::Relaxed).count_ones() as usize).sum()
    }

    fn for_each_row(&self, f: &mut dyn FnMut(u64, &[f32])) {
        let mut row = vec![0f32; self.row_len];
        for (wi, word) in self.touched.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let k = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.read(k as u64, &mut row);
                f(k as u64, &row);
            }
        }
    }
}

/// Hasher for keys that are already hashes (or small ids): one splitmix finaliser, no SipHash.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold bytes in so the hasher stays correct for any type.
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(self.0 ^ x);
    }
}

/// `HashMap` keyed by table keys with [`KeyHasher`].
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One lock's worth of a [`HashTable`].
type Shard = Mutex<RowMap>;

/// Number of independently locked shards: enough that a few threads rarely contend.
pub const HASH_SHARDS: usize = 64;

/// Collisionless table over full 64-bit keys: sharded [`RowMap`]s under mutexes, growing with the keys seen.
pub struct HashTable {
    row_len: usize,
    init: RowInit,
    shards: Box<[Shard]>,
}

impl HashTable {
    /// An empty table of rows of `row_len` floats, fresh rows shaped by `init`.
    pub fn new(row_len: usize, init: RowInit) -> Self {
        assert_eq!(row_len, init.row_len(), "HashTable: row_len differs from RowInit's");
        let shards = (0..HASH_SHARDS).map(|_| Mutex::new(RowMap::new(row_len))).collect();
        HashTable { row_len, init, shards }
    }

    #[inline(always)]
    fn shard(&self, key: u64) -> MutexGuard<'_, RowMap> {
        // Top bits of a different mix than the map's own hash, so shards and buckets stay independent.
        let s = (mix64(key ^ 0xA076_1D64_78BD_642F) >> 58) as usize;
        // A panic elsewhere cannot leave a row half-written (rows are plain copies), so poisoning is ignored.
        self.shards[s % HASH_SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Table for HashTable {
    #[inline]
    fn row_len(&self) -> usize {
        self.row_len
    }

    #[inline]
    fn read(&self, key: u64, row: &mut [f32]) {
        match self.shard(key).get(key) {
            Some(r) => row.copy_from_slice(r),
            None => self.init.fill(key, row),
        }
    }

    #[inline]
    fn write(&self, key: u64, row: &[f32]) {
        debug_assert_eq!(row.len(), self.row_len);
        self.shard(key).get_or_insert_with(key, |_| {}).copy_from_slice(row);
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    fn for_each_row(&self, f: &mut dyn FnMut(u64, &[f32])) {
        let mut keys: Vec<u64> = Vec::new();
        for s in self.shards.iter() {
            keys.extend_from_slice(s.lock().unwrap_or_else(|e| e.into_inner()).keys());
        }
        keys.sort_unstable();
        let mut row = vec![0f32; self.row_len];
        // Copy each row out before calling `f`, so no lock is held while `f` runs (it may use the table).
        for key in keys {
            let found = match self.shard(key).get(key) {
                Some(r) => {
                    row.copy_from_slice(r);
                    true
                }
                None => false,
            };
            if found {
                f(key, &row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Optimizer;

    fn fm_init() -> (RowInit, usize) {
        let spec = ModelSpec { seed: 3, ..ModelSpec::fm(2) };
        let row_len = spec.dim() + Optimizer::adagrad_default().state_len(spec.dim());
        (RowInit::new(&spec, row_len), row_len)
    }

    fn exercise<T: Table>(t: &T, keys: &[u64]) {
        let (init, row_len) = fm_init();
        assert_eq!(t.row_len(), row_len);
        assert_eq!(t.len(), 0);
        assert!(t.is_empty());
        let mut row = vec![9f32; row_len];
        let mut want = vec![0f32; row_len];
        // Fresh reads give the init and store nothing.
        for &k in keys {
            t.read(k, &mut row);
            init.fill(k, &mut want);
            assert_eq!(row, want);
            assert!(row[1..3].iter().all(|&v| v != 0.0) && row[3..].iter().all(|&v| v == 0.0));
        }
        assert_eq!(t.len(), 0);
        // Write a subset (one key twice), in scrambled order.
        let written: Vec<u64> = vec![keys[3], keys[0], keys[5], keys[3]];
        for (i, &k) in written.iter().enumerate() {
            let r: Vec<f32> = (0..row_len).map(|j| (i * 10 + j) as f32 + 0.5).collect();
            t.write(k, &r);
            t.read(k, &mut row);
            assert_eq!(row, r);
        }
        assert_eq!(t.len(), 3);
        let mut seen = Vec::new();
        t.for_each_row(&mut |k, r| {
            assert_eq!(r.len(), row_len);
            seen.push((k, r[0]));
        });
        let mut expect = vec![(keys[0], 10.5), (keys[3], 30.5), (keys[5], 20.5)];
        expect.sort_by_key(|e| e.0);
        assert_eq!(seen, expect);
        // Unwritten keys still read as init.
        t.read(keys[1], &mut row);
        init.fill(keys[1], &mut want);
        assert_eq!(row, want);
    }

    #[test]
    fn dense_table_behaves() {
        let (init, row_len) = fm_init();
        let t = DenseTable::new(10, row_len, init);
        assert_eq!(t.capacity(), 1024);
        exercise(&t, &[5, 1023, 0, 700, 64, 63, 128]);
    }

    #[test]
    fn a_cleared_dense_table_behaves_as_a_new_one() {
        let (init, row_len) = fm_init();
        let mut t = DenseTable::new(10, row_len, init.clone());
        exercise(&t, &[5, 1023, 0, 700, 64, 63, 128]);
        t.clear(init.clone());
        exercise(&t, &[5, 1023, 0, 700, 64, 63, 128]);
        // From an FM init to a zero init (LR rows of the same length): written rows read as zeros.
        t.write(700, &vec![1.0; row_len]);
        let lr = ModelSpec::lr();
        t.clear(RowInit::new(&lr, row_len));
        let mut row = vec![9f32; row_len];
        t.read(700, &mut row);
        assert!(row.iter().all(|&v| v == 0.0) && t.is_empty());
    }

    #[test]
    fn hash_table_behaves() {
        let (init, row_len) = fm_init();
        let t = HashTable::new(row_len, init);
        exercise(&t, &[u64::MAX, 17, 0, 1 << 63, 12345678901234, 64, 3]);
    }

    #[test]
    fn dyn_table_works() {
        let (init, row_len) = fm_init();
        let tables: Vec<Box<dyn Table>> =
            vec![Box::new(DenseTable::new(8, row_len, init.clone())), Box::new(HashTable::new(row_len, init))];
        for t in &tables {
            t.write(7, &vec![1.0; row_len]);
            assert_eq!(t.len(), 1);
        }
    }

    #[test]
    fn zero_init_dense_reads_zeros_and_counts_writes() {
        let spec = ModelSpec::lr();
        let t = DenseTable::new(4, 2, RowInit::new(&spec, 2));
        let mut row = [7f32; 2];
        t.read(9, &mut row);
        assert_eq!(row, [0.0, 0.0]);
        t.write(9, &[1.0, 2.0]);
        t.write(9, &[3.0, 4.0]);
        t.read(9, &mut row);
        assert_eq!(row, [3.0, 4.0]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn big_dense_table_is_cheap_until_touched() {
        // 512 MiB of address space; only pages actually written get committed.
        let spec = ModelSpec::lr();
        let t = DenseTable::new(26, 2, RowInit::new(&spec, 2));
        t.write((1 << 26) - 1, &[1.0, 2.0]);
        let mut row = [0f32; 2];
        t.read((1 << 26) - 1, &mut row);
        assert_eq!(row, [1.0, 2.0]);
        let mut n = 0;
        t.for_each_row(&mut |k, _| {
            assert_eq!(k, (1 << 26) - 1);
            n += 1;
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn concurrent_writers_count_each_row_once() {
        let (init, row_len) = fm_init();
        let dense = DenseTable::new(12, row_len, init.clone());
        let hash = HashTable::new(row_len, init);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (dense, hash) = (&dense, &hash);
                s.spawn(move || {
                    let row = vec![t as f32; row_len];
                    for k in 0..2000u64 {
                        dense.write(k, &row);
                        hash.write(k * 7919, &row);
                    }
                });
            }
        });
        assert_eq!(dense.len(), 2000);
        assert_eq!(hash.len(), 2000);
    }
}
