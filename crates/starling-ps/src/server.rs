//! A server: the tables' rows in its virtual shards, and the checks every request passes.
//!
//! Transports call [`Server::pull`] and [`Server::push`]; the same code serves the in-process
//! client and TCP connections, so both see the same validation and the same updates.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::PsError;
use crate::shard::vshard_of;
use crate::store::Store;
use crate::sync::{Rounds, Ticket};
use crate::table::TableSpec;

/// Traffic a server has served, for the per-server load report.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Pull requests.
    pub pulls: AtomicU64,
    /// Keys pulled.
    pub keys_pulled: AtomicU64,
    /// Push requests.
    pub pushes: AtomicU64,
    /// Keys pushed.
    pub keys_pushed: AtomicU64,
}

/// A plain copy of [`ServerStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Pull requests.
    pub pulls: u64,
    /// Keys pulled.
    pub keys_pulled: u64,
    /// Push requests.
    pub pushes: u64,
    /// Keys pushed.
    pub keys_pushed: u64,
    /// Rows stored.
    pub rows: u64,
}

/// One server's share of every table.
pub struct Server {
    id: usize,
    tables: Vec<Store>,
    /// The rounds of each synchronous table (`None` for the others).
    rounds: Vec<Option<Rounds>>,
    stats: ServerStats,
}

impl Server {
    /// Server `id` owning virtual shards `owned` of each table in `specs`. Until told how many
    /// workers a job has ([`Server::expect_workers`]), a synchronous table applies each push at once.
    pub fn new(id: usize, specs: &[TableSpec], owned: &[u32]) -> Self {
        let tables = specs.iter().map(|s| Store::new(s.clone(), owned)).collect();
        let rounds = specs.iter().map(|s| s.sync.then(|| Rounds::new(0))).collect();
        Server { id, tables, rounds, stats: ServerStats::default() }
    }

    /// The job has `workers` workers, each counted in every round of a synchronous table, and
    /// every table's step size warms up over `warmup_steps` steps, `steps_done` of them behind.
    pub fn expect_workers(&self, workers: usize, warmup_steps: u64, steps_done: u64) {
        for (r, store) in self.rounds.iter().zip(&self.tables) {
            // A synchronous table applies one push a step (a round's sum); the others each worker's.
            let per_step = if r.is_some() { 1 } else { workers as u64 };
            store.set_warmup(warmup_steps, steps_done, per_step);
            if let Some(r) = r {
                r.expect(workers, store);
            }
        }
    }

    /// Multiplies every table's step size by `factor` from the next push on.
    pub fn scale_lr(&self, factor: f32) {
        self.tables.iter().for_each(|t| t.scale_lr(factor));
    }

    /// Worker `worker` is counted again in synchronous rounds (a new pass of an in-process job).
    pub fn join(&self, worker: usize) {
        self.rounds.iter().flatten().for_each(|r| r.join(worker));
    }

    /// Worker `worker` is done or lost: synchronous rounds no longer wait for it.
    pub fn leave(&self, worker: usize) {
        for (r, store) in self.rounds.iter().zip(&self.tables) {
            if let Some(r) = r {
                r.leave(worker, store);
            }
        }
    }

    /// Blocks until the round of a synchronous push is applied.
    pub fn wait(&self, ticket: Ticket) {
        if let Some(Some(r)) = self.rounds.get(ticket.table as usize) {
            r.wait(ticket);
        }
    }

    /// Waits, without blocking a thread, until the round of a synchronous push is applied.
    pub async fn wait_async(&self, ticket: Ticket) {
        if let Some(Some(r)) = self.rounds.get(ticket.table as usize) {
            r.wait_async(ticket).await;
        }
    }

    /// Rounds applied so far of synchronous table `table` (0 for any other).
    pub fn rounds_applied(&self, table: u32) -> u64 {
        self.rounds.get(table as usize).and_then(Option::as_ref).map_or(0, Rounds::applied)
    }

    /// Server index in the shard map.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The stores, one per table.
    pub fn tables(&self) -> &[Store] {
        &self.tables
    }

    /// Store of `table`.
    pub fn table(&self, table: u32) -> Result<&Store, PsError> {
        self.tables.get(table as usize).ok_or(PsError::UnknownTable { table, tables: self.tables.len() })
    }

    fn check_keys(&self, keys: &[u64]) -> Result<(), PsError> {
        for (i, w) in keys.windows(2).enumerate() {
            if w[0] >= w[1] {
                return Err(PsError::UnsortedKeys { index: i + 1, key: w[1], prev: w[0] });
            }
        }
        Ok(())
    }

    fn not_owner(&self, key: u64) -> PsError {
        PsError::NotOwner { key, vshard: vshard_of(key), server: self.id }
    }

    /// Weights of `keys` (sorted, unique) of `table` into `out` (`keys.len() * dim`).
    pub fn pull(&self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        let store = self.table(table)?;
        let dim = store.spec().dim;
        if out.len() != keys.len() * dim {
            return Err(PsError::LengthMismatch { keys: keys.len(), values: out.len(), dim });
        }
        self.check_keys(keys)?;
        store.pull(keys, out).map_err(|k| self.not_owner(k))?;
        self.stats.pulls.fetch_add(1, Ordering::Relaxed);
        self.stats.keys_pulled.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Applies `grads` (`keys.len() * dim`) to `keys` (sorted, unique) of `table`. A push to a
    /// synchronous table joins the open round and returns its ticket: it is applied once the
    /// round closes ([`Server::wait`]).
    ///
    /// Every key is checked before any row changes, so a refused push leaves the table as it was.
    pub fn push(&self, table: u32, keys: &[u64], grads: &[f32]) -> Result<Option<Ticket>, PsError> {
        let store = self.table(table)?;
        let dim = store.spec().dim;
        if grads.len() != keys.len() * dim {
            return Err(PsError::LengthMismatch { keys: keys.len(), values: grads.len(), dim });
        }
        self.check_keys(keys)?;
        let ticket = match &self.rounds[table as usize] {
            Some(rounds) => {
                if let Some(&k) = keys.iter().find(|&&k| !store.owns(k)) {
                    return Err(self.not_owner(k));
                }
                Some(rounds.push(table, keys, grads, store))
            }
            // The store checks every key's shard before it changes a row.
            None => {
                store.push(keys, grads).map_err(|k| self.not_owner(k))?;
                None
            }
        };
        self.stats.pushes.fetch_add(1, Ordering::Relaxed);
        self.stats.keys_pushed.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(ticket)
    }

    /// Traffic so far and rows stored.
    pub fn stats(&self) -> StatsSnapshot {
        use starling_core::Table;
        let s = &self.stats;
        StatsSnapshot {
            pulls: s.pulls.load(Ordering::Relaxed),
            keys_pulled: s.keys_pulled.load(Ordering::Relaxed),
            pushes: s.pushes.load(Ordering::Relaxed),
            keys_pushed: s.keys_pushed.load(Ordering::Relaxed),
            rows: self.tables.iter().map(|t| t.len() as u64).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardMap;
    use starling_core::{ModelSpec, Optimizer};

    fn server(id: usize, of: usize) -> Server {
        let spec = TableSpec::for_model("w", &ModelSpec::lr(), &Optimizer::sgd_default());
        Server::new(id, &[spec], &ShardMap::even(of).vshards_of(id))
    }

    #[test]
    fn refuses_bad_requests_without_changing_rows() {
        let s = server(0, 1);
        let mut out = vec![0f32; 2];
        assert!(matches!(s.pull(0, &[5, 3], &mut out), Err(PsError::UnsortedKeys { index: 1, .. })));
        assert!(matches!(s.pull(0, &[5, 5], &mut out), Err(PsError::UnsortedKeys { .. })));
        assert!(matches!(s.pull(1, &[5], &mut out[..1]), Err(PsError::UnknownTable { table: 1, .. })));
        assert!(matches!(s.push(0, &[1, 2], &[0.5]), Err(PsError::LengthMismatch { .. })));
        assert_eq!(s.stats().rows, 0);
        s.push(0, &[1, 2], &[0.5, 0.5]).unwrap();
        assert_eq!(s.stats(), StatsSnapshot { pulls: 0, keys_pulled: 0, pushes: 1, keys_pushed: 2, rows: 2 });
    }

    #[test]
    fn a_push_with_a_foreign_key_applies_nothing() {
        let s = server(0, 2);
        let map = ShardMap::even(2);
        let mine = (0..).find(|&k| map.server_of(k) == 0).unwrap();
        let theirs = (mine + 1..).find(|&k| map.server_of(k) == 1).unwrap();
        assert!(matches!(s.push(0, &[mine, theirs], &[1.0, 1.0]), Err(PsError::NotOwner { server: 0, .. })));
        assert_eq!(s.stats().rows, 0);
        // A batch large enough to be grouped by shard is checked whole before any row changes too.
        let mut keys: Vec<u64> = (0..).filter(|&k| map.server_of(k) == 0).take(5000).collect();
        let foreign = (keys[4999]..).find(|&k| map.server_of(k) == 1).unwrap();
        keys[4999] = foreign;
        let grads = vec![1.0; keys.len()];
        assert!(matches!(s.push(0, &keys, &grads), Err(PsError::NotOwner { key, .. }) if key == foreign));
        assert_eq!(s.stats().rows, 0);
    }
}
