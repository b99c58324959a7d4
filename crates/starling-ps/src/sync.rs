//! Synchronous tables (design.md, decision 12): one step's pushes of every live worker are
//! summed and applied once; a push returns only when its round is applied, so the next pull of
//! any worker sees the whole step. (Deep models' workers push their share of the step's mean,
//! so the sum is the mean over every worker's examples.)
//!
//! Rounds count pushes, not who sent them: a worker blocked in its push cannot push again, so an
//! open round holds at most one push per worker, and every worker pushes to every server once
//! per step (an empty push when it has no key there). Who counts is kept by worker id, so that joining
//! and leaving (a thread's pass ending, a worker done or lost) are idempotent.

use std::sync::{Condvar, Mutex, MutexGuard};

use starling_core::table::KeyMap;

use crate::store::Store;

/// The open round of one synchronous table and who it waits for.
#[derive(Default)]
struct Round {
    /// Rounds applied so far.
    applied: u64,
    /// `members[w]`: worker `w` is counted in a round.
    members: Vec<bool>,
    /// Pushes summed into the open round (empty ones included: they count a worker as done).
    pushed: usize,
    /// Where each key of the open round sums its gradients, by first arrival; filled only once
    /// a push with other keys than the first's comes.
    at: KeyMap<u32>,
    /// Keys of the open round, by first arrival.
    keys: Vec<u64>,
    /// Sum of the open round's gradients, `dim` floats per key of `keys`.
    sum: Vec<f32>,
    /// The round's keys sorted, with their summed gradients: what is applied.
    sorted: Vec<(u64, u32)>,
    sorted_keys: Vec<u64>,
    summed: Vec<f32>,
}

impl Round {
    fn live(&self) -> usize {
        self.members.iter().filter(|&&m| m).count()
    }

    fn add(&mut self, keys: &[u64], grads: &[f32], dim: usize) {
        self.pushed += 1;
        if self.pushed == 1 || self.keys == keys {
            // The first push of a round, or one with the same keys (a dense block's chunks,
            // every step): no lookups, and `keys` stays sorted for the close.
            if self.pushed == 1 {
                self.keys.extend_from_slice(keys);
                self.sum.extend_from_slice(grads);
            } else {
                for (s, g) in self.sum.iter_mut().zip(grads) {
                    *s += g;
                }
            }
            return;
        }
        if self.at.is_empty() {
            // The round's keys so far are the first push's; index them once.
            for (i, &k) in self.keys.iter().enumerate() {
                self.at.insert(k, i as u32);
            }
        }
        for (&key, g) in keys.iter().zip(grads.chunks_exact(dim)) {
            let next = self.keys.len() as u32;
            let i = *self.at.entry(key).or_insert(next) as usize;
            if i == next as usize {
                self.keys.push(key);
                self.sum.extend_from_slice(g);
            } else {
                for (s, g) in self.sum[i * dim..(i + 1) * dim].iter_mut().zip(g) {
                    *s += g;
                }
            }
        }
    }

    /// Applies the open round when every live worker has pushed into it: each key's gradients
    /// summed over the pushes, once.
    fn close_if_complete(&mut self, store: &Store) -> bool {
        if self.pushed == 0 || self.pushed < self.live() {
            return false;
        }
        let dim = store.spec().dim;
        // Every key was checked against the store when its push came.
        if self.at.is_empty() {
            // Only the first push's keys, sorted as pushed.
            let _ = store.push(&self.keys, &self.sum);
        } else {
            self.sorted.clear();
            self.sorted.extend(self.keys.iter().enumerate().map(|(i, &k)| (k, i as u32)));
            self.sorted.sort_unstable();
            self.sorted_keys.clear();
            self.summed.clear();
            for &(k, i) in &self.sorted {
                self.sorted_keys.push(k);
                self.summed.extend_from_slice(&self.sum[i as usize * dim..(i as usize + 1) * dim]);
            }
            let _ = store.push(&self.sorted_keys, &self.summed);
        }
        self.applied += 1;
        self.pushed = 0;
        self.at.clear();
        self.keys.clear();
        self.sum.clear();
        true
    }
}

/// A push that returns once its round is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a synchronous push is applied only when its round closes: wait for it"]
pub struct Ticket {
    /// Table of the push.
    pub table: u32,
    /// The round is applied once the table's applied count exceeds this.
    pub round: u64,
}

/// The rounds of one synchronous table on one server.
pub(crate) struct Rounds {
    round: Mutex<Round>,
    closed: Condvar,
    closed_async: tokio::sync::Notify,
}

impl Rounds {
    /// Rounds expecting `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Rounds {
            round: Mutex::new(Round { members: vec![true; workers], ..Round::default() }),
            closed: Condvar::new(),
            closed_async: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A round is changed in place only by code that cannot panic halfway.
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        self.closed.notify_all();
        self.closed_async.notify_waiters();
    }

    /// Counts `workers` workers from now on, all of them members.
    pub(crate) fn expect(&self, workers: usize, store: &Store) {
        let mut r = self.lock();
        r.members = vec![true; workers];
        if r.close_if_complete(store) {
            self.wake();
        }
    }

    /// Adds `grads` of `keys` (checked by the caller) to the open round; applies it when complete.
    pub(crate) fn push(&self, table: u32, keys: &[u64], grads: &[f32], store: &Store) -> Ticket {
        let mut r = self.lock();
        r.add(keys, grads, store.spec().dim);
        let ticket = Ticket { table, round: r.applied };
        if r.close_if_complete(store) {
            self.wake();
        }
        ticket
    }

    /// Blocks until `ticket`'s round is applied.
    pub(crate) fn wait(&self, ticket: Ticket) {
        let mut r = self.lock();
        while r.applied <= ticket.round {
            r = self.closed.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits, without blocking a thread, until `ticket`'s round is applied.
    pub(crate) async fn wait_async(&self, ticket: Ticket) {
        loop {
            // Registered before the check, so a round closing in between still wakes it.
            let closed = self.closed_async.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.lock().applied > ticket.round {
                return;
            }
            closed.await;
        }
    }

    /// Worker `worker` is counted again (or for the first time).
    pub(crate) fn join(&self, worker: usize) {
        let mut r = self.lock();
        if worker >= r.members.len() {
            r.members.resize(worker + 1, false);
        }
        r.members[worker] = true;
    }

    /// Worker `worker` no longer counts: a round it has not pushed into closes without it.
    pub(crate) fn leave(&self, worker: usize, store: &Store) {
        let mut r = self.lock();
        if let Some(m) = r.members.get_mut(worker) {
            *m = false;
        }
        if r.close_if_complete(store) {
            self.wake();
        }
    }

    /// Rounds applied so far.
    pub(crate) fn applied(&self) -> u64 {
        self.lock().applied
    }
}
