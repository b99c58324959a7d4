//! Worker clocks and the staleness rule (design.md, decision 5).
//!
//! A worker's clock is the number of steps (mini-batches) it has finished. With staleness `s`, a
//! worker may start step `c` once every active worker has finished at least `c - s` steps:
//! `s = 0` is BSP, finite `s` SSP, unbounded ASP. Finished workers and workers given up on no
//! longer hold anyone back. [`ClockTable`] is the bookkeeping, shared by the coordinator and the
//! in-process cluster; [`LocalClocks`] adds blocking for threads of one process.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::PsError;

/// How far ahead of the slowest worker a worker may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Staleness {
    /// At most this many steps ahead (0 = BSP).
    Bounded(u32),
    /// No bound (ASP).
    Unbounded,
}

impl Staleness {
    /// True when a worker may start step `step` while the slowest active worker is at `min`.
    #[inline]
    pub fn allows(self, step: u64, min: u64) -> bool {
        match self {
            Staleness::Bounded(s) => step <= min + u64::from(s),
            Staleness::Unbounded => true,
        }
    }

    /// The mode's usual name.
    pub fn mode(self) -> &'static str {
        match self {
            Staleness::Bounded(0) => "BSP",
            Staleness::Bounded(_) => "SSP",
            Staleness::Unbounded => "ASP",
        }
    }
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::Bounded(s) => write!(f, "{s}"),
            Staleness::Unbounded => f.write_str("inf"),
        }
    }
}

impl FromStr for Staleness {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "inf" | "infinite" | "asp" | "ASP" => Ok(Staleness::Unbounded),
            "bsp" | "BSP" => Ok(Staleness::Bounded(0)),
            t => t
                .parse()
                .map(Staleness::Bounded)
                .map_err(|_| format!("staleness must be a step count or \"inf\", got {s:?}")),
        }
    }
}

/// Where a worker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Training.
    Active,
    /// Out of data; no longer counted.
    Done,
    /// Died or went silent, and the job goes on without it.
    Lost,
}

/// Buckets of the observed-staleness histogram: 0..=15 exactly, then "16 or more".
pub const STALENESS_BUCKETS: usize = 17;

/// Observed staleness at each step start: how many steps the slowest active worker was behind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalenessHistogram {
    /// Counts per bucket (see [`STALENESS_BUCKETS`]).
    pub counts: Vec<u64>,
    /// Largest staleness seen.
    pub max: u64,
}

impl StalenessHistogram {
    /// Counts one step start at `staleness`.
    pub fn record(&mut self, staleness: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; STALENESS_BUCKETS];
        }
        self.counts[(staleness as usize).min(STALENESS_BUCKETS - 1)] += 1;
        self.max = self.max.max(staleness);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &StalenessHistogram) {
        if self.counts.is_empty() {
            self.counts = vec![0; STALENESS_BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    /// Total step starts counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `"0:120 1:30 2:4"`, skipping empty buckets.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, n)| if i + 1 == STALENESS_BUCKETS { format!("{i}+:{n}") } else { format!("{i}:{n}") })
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Clocks of all workers and the rule that gates them.
#[derive(Clone, Debug)]
pub struct ClockTable {
    staleness: Staleness,
    clocks: Vec<u64>,
    states: Vec<WorkerState>,
    /// Staleness observed by every grant, as the coordinator saw it.
    pub observed: StalenessHistogram,
}

impl ClockTable {
    /// `workers` workers at clock 0 (or `start` when resuming).
    pub fn new(workers: usize, staleness: Staleness, start: u64) -> Self {
        ClockTable {
            staleness,
            clocks: vec![start; workers],
            states: vec![WorkerState::Active; workers],
            observed: StalenessHistogram::default(),
        }
    }

    /// The rule in force.
    pub fn staleness(&self) -> Staleness {
        self.staleness
    }

    /// Clock of each worker.
    pub fn clocks(&self) -> &[u64] {
        &self.clocks
    }

    /// State of each worker.
    pub fn states(&self) -> &[WorkerState] {
        &self.states
    }

    /// Slowest active worker's clock; `None` when none is active.
    pub fn min_active(&self) -> Option<u64> {
        self.clocks.iter().zip(&self.states).filter(|(_, s)| **s == WorkerState::Active).map(|(c, _)| *c).min()
    }

    /// Records that `worker` finished step `clock - 1` (its clock is now `clock`).
    pub fn advance(&mut self, worker: usize, clock: u64) {
        self.clocks[worker] = self.clocks[worker].max(clock);
    }

    /// True when a worker may start step `step` now.
    pub fn may_start(&self, step: u64) -> bool {
        self.min_active().is_none_or(|min| self.staleness.allows(step, min))
    }

    /// Records a granted start of `step` and returns the staleness it observed.
    pub fn grant(&mut self, step: u64) -> u64 {
        let s = self.min_active().map_or(0, |min| step.saturating_sub(min));
        self.observed.record(s);
        s
    }

    /// Marks `worker` as out of data.
    pub fn finish(&mut self, worker: usize) {
        if self.states[worker] == WorkerState::Active {
            self.states[worker] = WorkerState::Done;
        }
    }

    /// Makes a finished `worker` active again (a new pass of an in-process job), at the clock of
    /// the furthest worker, which it returns: threads whose passes had different numbers of steps
    /// start the next one level, so a step of one pairs with the same step of the others.
    pub fn rejoin(&mut self, worker: usize) -> u64 {
        if self.states[worker] == WorkerState::Done {
            self.states[worker] = WorkerState::Active;
            self.clocks[worker] = self.clocks.iter().copied().max().unwrap_or(0);
        }
        self.clocks[worker]
    }

    /// Marks `worker` as lost: it holds nobody back any more.
    pub fn lose(&mut self, worker: usize) {
        if self.states[worker] == WorkerState::Active {
            self.states[worker] = WorkerState::Lost;
        }
    }

    /// Every worker active again at `clocks` (a rollback to a checkpoint's cut); what was
    /// observed so far stays counted.
    pub fn rewind(&mut self, clocks: &[u64]) {
        self.clocks.copy_from_slice(clocks);
        self.states.fill(WorkerState::Active);
    }

    /// A worker that joins a running job, active at `clock`; returns its index.
    pub fn add(&mut self, clock: u64) -> usize {
        self.clocks.push(clock);
        self.states.push(WorkerState::Active);
        self.clocks.len() - 1
    }

    /// Worker `worker` active again at `clock` (its replacement resumes from a cut).
    pub fn set(&mut self, worker: usize, clock: u64) {
        self.clocks[worker] = clock;
        self.states[worker] = WorkerState::Active;
    }

    /// True when no worker is active.
    pub fn all_finished(&self) -> bool {
        self.states.iter().all(|s| *s != WorkerState::Active)
    }
}

/// What a step start cost: time blocked by the rule and the staleness observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wait {
    /// Time blocked.
    pub waited: Duration,
    /// Steps the slowest active worker was behind when this step started.
    pub staleness: u64,
}

/// A [`ClockTable`] shared by the threads of one process.
#[derive(Clone)]
pub struct LocalClocks {
    inner: Arc<(Mutex<ClockTable>, Condvar)>,
}

impl LocalClocks {
    /// Clocks for `workers` threads.
    pub fn new(workers: usize, staleness: Staleness, start: u64) -> Self {
        LocalClocks { inner: Arc::new((Mutex::new(ClockTable::new(workers, staleness, start)), Condvar::new())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockTable> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `worker` finished a step and now has clock `clock`; blocks until it may start step `clock`.
    pub fn tick(&self, worker: usize, clock: u64) -> Result<Wait, PsError> {
        let started = Instant::now();
        let mut t = self.lock();
        t.advance(worker, clock);
        self.inner.1.notify_all();
        while !t.may_start(clock) {
            t = self.inner.1.wait(t).unwrap_or_else(|e| e.into_inner());
        }
        let staleness = t.grant(clock);
        Ok(Wait { waited: started.elapsed(), staleness })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.lock().clocks.len()
    }

    /// `worker` has no more steps.
    pub fn finish(&self, worker: usize) {
        self.lock().finish(worker);
        self.inner.1.notify_all();
    }

    /// A finished `worker` starts another pass, at the clock returned (see [`ClockTable::rejoin`]).
    pub fn rejoin(&self, worker: usize) -> u64 {
        self.lock().rejoin(worker)
    }

    /// A copy of the table, for reports.
    pub fn snapshot(&self) -> ClockTable {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("0".parse::<Staleness>().unwrap(), Staleness::Bounded(0));
        assert_eq!("3".parse::<Staleness>().unwrap(), Staleness::Bounded(3));
        assert_eq!("inf".parse::<Staleness>().unwrap(), Staleness::Unbounded);
        assert!("-1".parse::<Staleness>().is_err());
        assert_eq!(Staleness::Bounded(0).mode(), "BSP");
    }

    #[test]
    fn bsp_waits_for_everyone_and_done_workers_stop_counting() {
        let mut t = ClockTable::new(2, Staleness::Bounded(0), 0);
        assert!(t.may_start(0));
        t.advance(0, 1);
        assert!(!t.may_start(1));
        t.advance(1, 1);
        assert!(t.may_start(1));
        t.advance(0, 2);
        t.finish(1);
        assert!(t.may_start(2));
        t.finish(0);
        assert!(t.all_finished());
    }

    #[test]
    fn a_worker_rejoining_for_a_new_pass_starts_level_with_the_furthest() {
        let mut t = ClockTable::new(2, Staleness::Bounded(0), 0);
        t.advance(0, 5);
        t.advance(1, 4);
        t.finish(0);
        t.finish(1);
        assert_eq!(t.rejoin(1), 5);
        assert_eq!(t.rejoin(0), 5);
        assert!(t.may_start(5) && !t.may_start(6));
    }

    #[test]
    fn ssp_bounds_the_lead() {
        let mut t = ClockTable::new(2, Staleness::Bounded(2), 0);
        t.advance(0, 2);
        assert!(t.may_start(2));
        t.advance(0, 3);
        assert!(!t.may_start(3));
        t.lose(1);
        assert!(t.may_start(3));
    }

    #[test]
    fn threads_never_exceed_the_bound() {
        let clocks = LocalClocks::new(3, Staleness::Bounded(1), 0);
        std::thread::scope(|s| {
            for w in 0..3 {
                let clocks = clocks.clone();
                s.spawn(move || {
                    for c in 1..=200u64 {
                        if w == 2 && c % 7 == 0 {
                            std::thread::yield_now();
                        }
                        let wait = clocks.tick(w, c).unwrap();
                        assert!(wait.staleness <= 1, "staleness {}", wait.staleness);
                    }
                    clocks.finish(w);
                });
            }
        });
        let t = clocks.snapshot();
        assert!(t.observed.max <= 1);
        assert_eq!(t.observed.total(), 600);
    }
}
