//! The one interface a trainer uses to reach the parameters (design.md, decision 4), and its
//! in-process transport. The TCP transport lives in [`crate::tcp`]; the trainer cannot tell them apart.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{LocalClocks, StalenessHistogram, Wait};
use crate::error::PsError;
use crate::server::Server;
use crate::shard::{ShardMap, Split};
use crate::sync::Ticket;
use crate::table::TableSpec;

/// Pull, push and clock, as a worker sees them.
///
/// Keys of one call must be sorted and unique; values are `dim` floats per key, in key order.
pub trait ParamClient: Send {
    /// The job's tables, indexed by table id.
    fn tables(&self) -> &[TableSpec];
    /// Current weights of `keys` of `table` into `out`.
    fn pull(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError>;
    /// Sends a pull without waiting for its values, so the caller can compute meanwhile;
    /// [`ParamClient::pull_finish`] with the same `table` and `keys` must be the next call.
    /// Transports without latency to hide do the whole pull in `pull_finish`.
    fn pull_start(&mut self, _table: u32, _keys: &[u64]) -> Result<(), PsError> {
        Ok(())
    }
    /// The values of the pull [`ParamClient::pull_start`] sent, into `out`.
    fn pull_finish(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        self.pull(table, keys, out)
    }
    /// Sends gradients of `keys` of `table`; returns once every server has applied them.
    fn push(&mut self, table: u32, keys: &[u64], grads: &[f32]) -> Result<(), PsError>;
    /// Ends this worker's step and blocks until the consistency rule lets the next one start.
    fn clock(&mut self) -> Result<Wait, PsError>;
    /// This worker has finished: it stops holding others back.
    fn finish(&mut self) -> Result<(), PsError>;
    /// Traffic and waiting so far.
    fn stats(&self) -> &ClientStats;
}

/// What a worker's client has moved and waited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientStats {
    /// Keys pulled.
    pub keys_pulled: u64,
    /// Bytes of keys and values pulled, keys at 8 bytes each (as they cross the wire, or would,
    /// before any delta encoding).
    pub bytes_pulled: u64,
    /// Keys pushed.
    pub keys_pushed: u64,
    /// Bytes of keys and gradients pushed, keys at 8 bytes each.
    pub bytes_pushed: u64,
    /// Time blocked by the consistency rule.
    pub wait: Duration,
    /// Staleness observed at each step start.
    pub staleness: StalenessHistogram,
    /// Steps finished.
    pub steps: u64,
}

impl ClientStats {
    /// Counts a pull of `keys` keys and `values` values of `value_bytes` each.
    pub fn count_pull(&mut self, keys: usize, values: usize, value_bytes: usize) {
        self.keys_pulled += keys as u64;
        self.bytes_pulled += (keys * 8 + values * value_bytes) as u64;
    }

    /// Counts a push of `keys` keys and `values` values of `value_bytes` each.
    pub fn count_push(&mut self, keys: usize, values: usize, value_bytes: usize) {
        self.keys_pushed += keys as u64;
        self.bytes_pushed += (keys * 8 + values * value_bytes) as u64;
    }

    /// Counts a finished step and what starting the next one cost.
    pub fn count_step(&mut self, wait: Wait) {
        self.steps += 1;
        self.wait += wait.waited;
        self.staleness.record(wait.staleness);
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, o: &ClientStats) {
        self.keys_pulled += o.keys_pulled;
        self.bytes_pulled += o.bytes_pulled;
        self.keys_pushed += o.keys_pushed;
        self.bytes_pushed += o.bytes_pushed;
        self.wait += o.wait;
        self.staleness.merge(&o.staleness);
        self.steps += o.steps;
    }
}

/// Servers and clocks living in this process: the single-machine form of a cluster.
pub struct LocalCluster {
    specs: Vec<TableSpec>,
    map: ShardMap,
    servers: Vec<Server>,
    clocks: LocalClocks,
}

impl LocalCluster {
    /// `servers` in-process servers for `specs`, gating `workers` worker threads by `clocks`.
    pub fn new(specs: Vec<TableSpec>, servers: usize, clocks: LocalClocks) -> Arc<Self> {
        Self::with_warmup(specs, servers, clocks, 0)
    }

    /// [`LocalCluster::new`] whose tables warm their step sizes up over `warmup_steps` steps.
    pub fn with_warmup(specs: Vec<TableSpec>, servers: usize, clocks: LocalClocks, warmup_steps: u64) -> Arc<Self> {
        let map = ShardMap::even(servers);
        let servers: Vec<Server> = (0..servers).map(|i| Server::new(i, &specs, &map.vshards_of(i))).collect();
        for s in &servers {
            s.expect_workers(clocks.workers(), warmup_steps, 0);
        }
        Arc::new(LocalCluster { specs, map, servers, clocks })
    }

    /// The servers, for checkpoints and reports.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The clocks, for reports.
    pub fn clocks(&self) -> &LocalClocks {
        &self.clocks
    }

    /// A client for worker `worker` starting at `clock`.
    pub fn client(self: &Arc<Self>, worker: usize, clock: u64) -> LocalClient {
        LocalClient {
            cluster: Arc::clone(self),
            worker,
            clock,
            split: Split::default(),
            buf: Vec::new(),
            tickets: Vec::new(),
            stats: ClientStats::default(),
        }
    }
}

/// Direct calls into in-process servers: no sockets, and with one server no copies beyond `out`.
pub struct LocalClient {
    cluster: Arc<LocalCluster>,
    worker: usize,
    clock: u64,
    split: Split,
    buf: Vec<f32>,
    /// Synchronous pushes of the current call, waited for once every server has its share.
    tickets: Vec<(usize, Ticket)>,
    stats: ClientStats,
}

impl LocalClient {
    /// Counts this worker again after [`ParamClient::finish`] (threads of `starling train` meet
    /// between passes, so each finishes its pass and rejoins for the next). Every thread must
    /// rejoin before any starts the pass, or the first to start would step alone.
    pub fn rejoin(&mut self) {
        self.clock = self.cluster.clocks.rejoin(self.worker);
        for s in &self.cluster.servers {
            s.join(self.worker);
        }
    }

    fn dim(&self, table: u32) -> Result<usize, PsError> {
        let tables = self.cluster.specs.len();
        self.cluster.specs.get(table as usize).map(|s| s.dim).ok_or(PsError::UnknownTable { table, tables })
    }
}

impl ParamClient for LocalClient {
    fn tables(&self) -> &[TableSpec] {
        &self.cluster.specs
    }

    fn pull(&mut self, table: u32, keys: &[u64], out: &mut [f32]) -> Result<(), PsError> {
        let dim = self.dim(table)?;
        let c = &self.cluster;
        if c.servers.len() == 1 {
            c.servers[0].pull(table, keys, out)?;
        } else {
            if out.len() != keys.len() * dim {
                return Err(PsError::LengthMismatch { keys: keys.len(), values: out.len(), dim });
            }
            self.split.fill(&c.map, keys);
            for (s, server) in c.servers.iter().enumerate() {
                let (ks, pos) = (&self.split.keys[s], &self.split.pos[s]);
                self.buf.resize(ks.len() * dim, 0.0);
                server.pull(table, ks, &mut self.buf)?;
                for (&p, w) in pos.iter().zip(self.buf.chunks_exact(dim)) {
                    out[p as usize * dim..(p as usize + 1) * dim].copy_from_slice(w);
                }
            }
        }
        self.stats.count_pull(keys.len(), out.len(), 4);
        Ok(())
    }

    fn push(&mut self, table: u32, keys: &[u64], grads: &[f32]) -> Result<(), PsError> {
        let dim = self.dim(table)?;
        let c = &self.cluster;
        self.tickets.clear();
        if c.servers.len() == 1 {
            self.tickets.extend(c.servers[0].push(table, keys, grads)?.map(|t| (0, t)));
        } else {
            if grads.len() != keys.len() * dim {
                return Err(PsError::LengthMismatch { keys: keys.len(), values: grads.len(), dim });
            }
            self.split.fill(&c.map, keys);
            for (s, server) in c.servers.iter().enumerate() {
                let (ks, pos) = (&self.split.keys[s], &self.split.pos[s]);
                // As over TCP: a server with none of the keys is not sent a push, unless the
                // table is synchronous (its rounds count one push per worker and server).
                if ks.is_empty() && !c.specs[table as usize].sync {
                    continue;
                }
                self.buf.clear();
                for &p in pos {
                    self.buf.extend_from_slice(&grads[p as usize * dim..(p as usize + 1) * dim]);
                }
                self.tickets.extend(server.push(table, ks, &self.buf)?.map(|t| (s, t)));
            }
        }
        for &(s, ticket) in &self.tickets {
            c.servers[s].wait(ticket);
        }
        self.stats.count_push(keys.len(), grads.len(), 4);
        Ok(())
    }

    fn clock(&mut self) -> Result<Wait, PsError> {
        self.clock += 1;
        let wait = self.cluster.clocks.tick(self.worker, self.clock)?;
        self.stats.count_step(wait);
        Ok(wait)
    }

    fn finish(&mut self) -> Result<(), PsError> {
        self.cluster.clocks.finish(self.worker);
        for s in &self.cluster.servers {
            s.leave(self.worker);
        }
        Ok(())
    }

    fn stats(&self) -> &ClientStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Staleness;
    use starling_core::{ModelSpec, Optimizer};

    fn sync_table() -> TableSpec {
        let sgd = Optimizer::Sgd { lr: 1.0, l2: 0.0 };
        TableSpec { sync: true, ..TableSpec::dense_block("dense", 6, 2, &sgd, crate::Init::Zeros) }
    }

    #[test]
    fn a_synchronous_table_applies_the_sum_of_a_step_once() {
        let cluster = LocalCluster::new(vec![sync_table()], 2, LocalClocks::new(2, Staleness::Unbounded, 0));
        let keys = [0u64, 1, 2];
        let seen: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|w| {
                    let mut c = cluster.client(w, 0);
                    s.spawn(move || {
                        let mut out = vec![0f32; 6];
                        for step in 0..3 {
                            // Worker 0 pushes 1 and worker 1 pushes 3: every step moves the weights by 4, once.
                            c.push(0, &keys, &[1.0 + 2.0 * w as f32; 6]).unwrap();
                            c.pull(0, &keys, &mut out).unwrap();
                            assert_eq!(out, vec![-4.0 * (step + 1) as f32; 6], "worker {w}, step {step}");
                            c.clock().unwrap();
                        }
                        c.finish().unwrap();
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(seen[0], seen[1]);
        let rounds: u64 = cluster.servers().iter().map(|s| s.rounds_applied(0)).sum();
        assert_eq!(rounds, 6, "three rounds on each of the two servers");
    }

    #[test]
    fn a_synchronous_sparse_table_sums_pushes_of_different_keys() {
        let sgd = Optimizer::Sgd { lr: 1.0, l2: 0.0 };
        let spec = TableSpec { sync: true, ..TableSpec::sparse("emb", 1, &sgd, crate::Init::Zeros, 0) };
        let cluster = LocalCluster::new(vec![spec], 2, LocalClocks::new(2, Staleness::Unbounded, 0));
        let pushes: [(&[u64], &[f32]); 2] = [(&[1, 5, 9], &[1.0, 2.0, 3.0]), (&[5, 7], &[10.0, 20.0])];
        std::thread::scope(|s| {
            for (w, (keys, grads)) in pushes.into_iter().enumerate() {
                let mut c = cluster.client(w, 0);
                s.spawn(move || c.push(0, keys, grads).unwrap());
            }
        });
        let mut out = vec![0f32; 4];
        cluster.client(0, 0).pull(0, &[1, 5, 7, 9], &mut out).unwrap();
        assert_eq!(out, [-1.0, -12.0, -20.0, -3.0]);
        let rounds: u64 = cluster.servers().iter().map(|s| s.rounds_applied(0)).sum();
        assert_eq!(rounds, 2, "one round on each server, empty pushes included");
    }

    #[test]
    fn a_worker_leaving_releases_a_synchronous_round() {
        let cluster = LocalCluster::new(vec![sync_table()], 1, LocalClocks::new(2, Staleness::Unbounded, 0));
        let (mut a, mut b) = (cluster.client(0, 0), cluster.client(1, 0));
        std::thread::scope(|s| {
            let pushed = s.spawn(move || a.push(0, &[0, 1, 2], &[4.0; 6]).unwrap());
            // The push waits for worker 1 until it leaves; then it is applied alone.
            std::thread::sleep(Duration::from_millis(20));
            assert!(!pushed.is_finished());
            b.finish().unwrap();
            pushed.join().unwrap();
        });
        let mut out = vec![0f32; 6];
        cluster.client(0, 0).pull(0, &[0, 1, 2], &mut out).unwrap();
        assert_eq!(out, vec![-4.0; 6]);
    }

    #[test]
    fn many_local_servers_act_as_one() {
        let spec = TableSpec::for_model("w", &ModelSpec { seed: 2, ..ModelSpec::fm(3) }, &Optimizer::adagrad_default());
        let one = LocalCluster::new(vec![spec.clone()], 1, LocalClocks::new(1, Staleness::Bounded(0), 0));
        let three = LocalCluster::new(vec![spec], 3, LocalClocks::new(1, Staleness::Bounded(0), 0));
        let (mut a, mut b) = (one.client(0, 0), three.client(0, 0));
        let keys: Vec<u64> = (0..300).map(|k| k * 1_000_003).collect();
        let grads: Vec<f32> = (0..keys.len() * 4).map(|i| (i % 13) as f32 * 0.01 - 0.05).collect();
        let (mut wa, mut wb) = (vec![0f32; grads.len()], vec![0f32; grads.len()]);
        for _ in 0..3 {
            a.push(0, &keys, &grads).unwrap();
            b.push(0, &keys, &grads).unwrap();
            a.clock().unwrap();
            b.clock().unwrap();
        }
        a.pull(0, &keys, &mut wa).unwrap();
        b.pull(0, &keys, &mut wb).unwrap();
        assert_eq!(wa, wb);
        assert_eq!(a.stats().keys_pushed, 900);
        assert_eq!(b.stats().steps, 3);
        let rows: u64 = three.servers().iter().map(|s| s.stats().rows).sum();
        assert_eq!(rows, 300);
        assert!(three.servers().iter().all(|s| s.stats().rows > 50), "keys should spread over servers");
    }
}
