//! [`RowMap`]: rows of `row_len` floats by 64-bit key, packed for memory.
//!
//! A key costs its row, its 8 bytes and a 4-byte slot of an open-addressing index kept at most
//! three quarters full: about `4 * row_len + 8 + 4 / 0.55` bytes on average, where a `HashMap`
//! of boxed rows spends a heap block (with the allocator's header and rounding) and a 24-byte
//! entry per key. Rows and keys sit densely in insertion order; the index holds row numbers.
//! The arrays grow by an eighth at a time, so little capacity is ever unused.

/// Largest share of index slots in use before the index doubles.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;
/// Index slots of a fresh map.
const MIN_SLOTS: usize = 16;

/// Rows by key; see the module documentation.
#[derive(Clone, Debug)]
pub struct RowMap {
    row_len: usize,
    /// Row number + 1 of each index slot; 0 for an empty slot.
    slots: Vec<u32>,
    /// `64 - log2(slots.len())`: a key's home slot is the top bits of its hash.
    shift: u32,
    /// Key of each row, in insertion order.
    keys: Vec<u64>,
    /// `row_len` floats per row, in insertion order.
    rows: Vec<f32>,
}

/// Index position of a key: the top bits of a multiplicative hash, which every bit of the key
/// moves, so neither small ids nor keys differing only in their high bits pile up.
#[inline(always)]
fn home(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// Grows `v` to hold `more` further items, by at least an eighth of its size: a doubling
/// `Vec` can leave half its capacity unused, which large maps cannot afford.
fn reserve_eighth<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 8).max(64));
    }
}

impl RowMap {
    /// An empty map of rows of `row_len` floats.
    pub fn new(row_len: usize) -> Self {
        RowMap {
            row_len,
            slots: vec![0; MIN_SLOTS],
            shift: 64 - MIN_SLOTS.trailing_zeros(),
            keys: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Rows stored.
    #[inline]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no row is stored.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The slot of `key`, or the empty slot where it would go.
    #[inline(always)]
    fn find(&self, key: u64) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        let mut h = home(key, self.shift);
        loop {
            let s = self.slots[h];
            if s == 0 {
                return (h, None);
            }
            let i = (s - 1) as usize;
            if self.keys[i] == key {
                return (h, Some(i));
            }
            h = (h + 1) & mask;
        }
    }

    #[inline(always)]
    fn at(&self, i: usize) -> &[f32] {
        &self.rows[i * self.row_len..(i + 1) * self.row_len]
    }

    /// The row of `key`, if stored.
    #[inline]
    pub fn get(&self, key: u64) -> Option<&[f32]> {
        self.find(key).1.map(|i| self.at(i))
    }

    /// The row of `key`; a missing one is first added and filled by `fresh`.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: u64, fresh: impl FnOnce(&mut [f32])) -> &mut [f32] {
        let n = self.row_len;
        let i = match self.find(key) {
            (_, Some(i)) => i,
            (mut h, None) => {
                if (self.keys.len() + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
                    self.grow_index();
                    h = self.find(key).0;
                }
                let i = self.keys.len();
                let Ok(number) = u32::try_from(i + 1) else {
                    panic!("RowMap: more than {} rows in one map", u32::MAX);
                };
                reserve_eighth(&mut self.keys, 1);
                reserve_eighth(&mut self.rows, n);
                self.rows.resize((i + 1) * n, 0.0);
                fresh(&mut self.rows[i * n..]);
                self.keys.push(key);
                // Last, so a panic above leaves no slot pointing past the keys.
                self.slots[h] = number;
                i
            }
        };
        &mut self.rows[i * n..(i + 1) * n]
    }

    /// Doubles the index and places every row again.
    #[cold]
    fn grow_index(&mut self) {
        let slots = self.slots.len() * 2;
        self.slots = vec![0; slots];
        self.shift = 64 - slots.trailing_zeros();
        for (i, &key) in self.keys.iter().enumerate() {
            let mut h = home(key, self.shift);
            while self.slots[h] != 0 {
                h = (h + 1) & (slots - 1);
            }
            self.slots[h] = i as u32 + 1;
        }
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// Every `(key, row)`, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> + '_ {
        self.keys.iter().copied().zip(self.rows.chunks_exact(self.row_len.max(1)))
    }

    /// Bytes held by the map's arrays (capacity, not only what is used).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 4 + self.keys.capacity() * 8 + self.rows.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_finds_and_grows() {
        let mut m = RowMap::new(3);
        assert!(m.is_empty());
        // Keys that collide in the low bits, the largest key, and zero.
        let keys: Vec<u64> = (0..5000u64).map(|i| i << 40).chain([u64::MAX, 0, 1]).collect();
        for (n, &k) in keys.iter().enumerate() {
            assert!(m.get(k).is_none() || k == 0);
            let row = m.get_or_insert_with(k, |r| r.fill(n as f32));
            row[1] += 1.0;
        }
        assert_eq!(m.len(), keys.len() - 1, "0 << 40 and 0 are one key");
        for (n, &k) in keys.iter().enumerate() {
            let r = m.get(k).unwrap();
            if k != 0 {
                assert_eq!(r, &[n as f32, n as f32 + 1.0, n as f32][..]);
            }
        }
        m.get_or_insert_with(u64::MAX, |_| unreachable!("stored"))[0] = -1.0;
        assert_eq!(m.get(u64::MAX).unwrap()[0], -1.0);
        assert!(m.get(12345).is_none());
        let seen: Vec<u64> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(seen, m.keys());
        // Packed: slots at most 4/0.375 bytes a key beyond the row and key.
        assert!(m.heap_bytes() < m.len() * (12 + 8 + 11) + 4096, "{} bytes", m.heap_bytes());
    }
}
