//! Keys to virtual shards to servers (design.md, decision 2).
//!
//! A key's virtual shard is a fixed hash of the key, so it never changes; which server owns a
//! virtual shard is a table the coordinator hands out. Re-sharding moves whole virtual shards.

use serde::{Deserialize, Serialize};
use starling_core::hash::mix64;

/// Virtual shards per job: enough to balance a few hundred servers, few enough to list in a manifest.
pub const NUM_VSHARDS: u32 = 1024;

/// Virtual shard of `key`.
#[inline(always)]
pub fn vshard_of(key: u64) -> u32 {
    // A different mix than the stores' own hashing, so a shard's keys still spread over its buckets.
    (mix64(key ^ 0x5851_F42D_4C95_7F2D) >> 54) as u32 % NUM_VSHARDS
}

/// Owner (server index) of each virtual shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    owners: Vec<u16>,
    servers: u16,
}

impl ShardMap {
    /// Virtual shards dealt round-robin over `servers` servers (`1..=65535`).
    pub fn even(servers: usize) -> Self {
        assert!((1..=u16::MAX as usize).contains(&servers), "server count {servers} out of range");
        let owners = (0..NUM_VSHARDS as usize).map(|v| (v % servers) as u16).collect();
        ShardMap { owners, servers: servers as u16 }
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.servers as usize
    }

    /// Server that owns virtual shard `v`.
    #[inline(always)]
    pub fn owner_of_vshard(&self, v: u32) -> usize {
        self.owners[v as usize] as usize
    }

    /// Server that owns `key`.
    #[inline(always)]
    pub fn server_of(&self, key: u64) -> usize {
        self.owner_of_vshard(vshard_of(key))
    }

    /// Virtual shards owned by `server`.
    pub fn vshards_of(&self, server: usize) -> Vec<u32> {
        (0..NUM_VSHARDS).filter(|&v| self.owner_of_vshard(v) == server).collect()
    }
}

/// A sorted key array split per server, remembering where each key came from so replies can be
/// scattered back: the per-server key lists stay sorted because they are filtered in order.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Keys of each server, in increasing order.
    pub keys: Vec<Vec<u64>>,
    /// For each server, the position in the original array of each of its keys.
    pub pos: Vec<Vec<u32>>,
}

impl Split {
    /// Splits `keys` by owner under `map`, reusing this split's buffers.
    pub fn fill(&mut self, map: &ShardMap, keys: &[u64]) {
        let s = map.servers();
        self.keys.resize_with(s, Vec::new);
        self.pos.resize_with(s, Vec::new);
        for (k, p) in self.keys.iter_mut().zip(&mut self.pos) {
            k.clear();
            p.clear();
        }
        if s == 1 {
            // One server holds every key: no owner to look up.
            self.keys[0].extend_from_slice(keys);
            self.pos[0].extend(0..keys.len() as u32);
            return;
        }
        for (i, &key) in keys.iter().enumerate() {
            let o = map.server_of(key);
            self.keys[o].push(key);
            self.pos[o].push(i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vshards_are_balanced_and_stable() {
        let mut counts = vec![0u32; NUM_VSHARDS as usize];
        for k in 0..1_000_000u64 {
            counts[vshard_of(k) as usize] += 1;
        }
        let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(lo > 850 && hi < 1150, "unbalanced vshards: {lo}..{hi}");
        assert_eq!(vshard_of(42), vshard_of(42));
    }

    #[test]
    fn even_map_covers_every_vshard_once() {
        for s in [1, 2, 3, 7] {
            let m = ShardMap::even(s);
            let total: usize = (0..s).map(|i| m.vshards_of(i).len()).sum();
            assert_eq!(total, NUM_VSHARDS as usize);
        }
    }

    #[test]
    fn split_keeps_order_and_positions() {
        let m = ShardMap::even(3);
        let keys: Vec<u64> = (0..100).map(|k| k * 31 + 5).collect();
        let mut sp = Split::default();
        sp.fill(&m, &keys);
        let mut seen = 0;
        for s in 0..3 {
            assert!(sp.keys[s].windows(2).all(|w| w[0] < w[1]));
            for (&k, &p) in sp.keys[s].iter().zip(&sp.pos[s]) {
                assert_eq!(keys[p as usize], k);
                assert_eq!(m.server_of(k), s);
                seen += 1;
            }
        }
        assert_eq!(seen, keys.len());
    }
}
