//! What the coordinator decides before any process starts work: the resolved job, its tables,
//! the shard map, and where training resumes from.

use std::path::{Path, PathBuf};

use starling_core::graph::Fields;
use starling_ps::control::Piece;
use starling_ps::{checkpoint, Manifest, ShardMap, TableSpec};

use super::ClusterError;
use crate::config::{ConfigError, JobConfig};
use crate::input::Inputs;
use crate::model::Net;

/// A job ready to hand out.
pub struct Plan {
    /// The job, `[features]` resolved (format, field count) so every worker reads input the same way.
    pub job: JobConfig,
    /// Server processes.
    pub servers: usize,
    /// Worker processes.
    pub workers: usize,
    /// The model's tables.
    pub tables: Vec<TableSpec>,
    /// The input's fields (the model is built over them; checkpoints record them).
    pub fields: Fields,
    /// Virtual shard owners.
    pub map: ShardMap,
    /// The job's shared secret.
    pub token: Vec<u8>,
    /// Steps each worker already did (from the checkpoint resumed, else zeros).
    pub start_clocks: Vec<u64>,
    /// Checkpoint the servers load their rows from.
    pub resume_from: Option<PathBuf>,
    /// Set when this coordinator replaces one that died.
    pub recovering: Option<Recovering>,
    /// An elastic job's input not yet trained on (all of it for a fresh job); `None` when every
    /// worker reads its fixed slice.
    pub pieces_left: Option<Vec<Piece>>,
}

/// What a coordinator that replaces a dead one is told by its launcher.
#[derive(Clone, Copy, Debug)]
pub struct Recovering {
    /// When the job started (Unix seconds): only checkpoints written since are its own.
    pub since_unix: u64,
    /// Restarts the job has used, this one included.
    pub restarts_used: u32,
}

impl Plan {
    /// Resolves `job` for `servers` × `workers` processes, finding the checkpoint to resume from.
    pub fn new(mut job: JobConfig, servers: usize, workers: usize, token: Vec<u8>) -> Result<Plan, ClusterError> {
        job.cluster.servers = servers;
        job.cluster.workers = workers;
        job.validate()?;
        if job.data.train.is_empty() {
            return Err(ClusterError::Failed("no training data: set [data] train = [...] in the job config".into()));
        }
        let train = job.data.train.clone();
        let inputs = Inputs::open(&mut job, &train, workers)?;
        // Checked before any process starts training: the inputs open and their first lines parse.
        inputs.preflight(&format!("the training input {}", crate::input::show_paths(&train)))?;
        if !job.data.test.is_empty() {
            let test = job.data.test.clone();
            Inputs::open(&mut job.clone(), &test, 1)?
                .preflight(&format!("the holdout {}", crate::input::show_paths(&test)))?;
        }
        let fields = inputs.fields();
        inputs.resolve_numeric_stats(&mut job)?;
        Plan::resolved(job, servers, workers, token, fields)
    }

    /// A plan for a job whose input the caller resolved (`job.features` final, `fields` the
    /// pipeline's): input that is not files, such as the record batches of Spark tasks.
    pub fn resolved(
        mut job: JobConfig,
        servers: usize,
        workers: usize,
        token: Vec<u8>,
        fields: Fields,
    ) -> Result<Plan, ClusterError> {
        job.cluster.servers = servers;
        job.cluster.workers = workers;
        job.validate()?;
        let t = &job.train;
        for (field, set) in [
            ("train.patience", t.patience > 0),
            ("train.lr_decay_on_plateau", t.lr_decay_on_plateau > 1.0),
            ("train.eval_every", t.eval_every > 0),
        ] {
            if set {
                let message = "early stopping and its schedule run in `starling train` and `starling tune`; a cluster job trains its passes without a validation set".to_string();
                return Err(ConfigError::Invalid { field, message }.into());
            }
        }
        let tables = Net::new(&job, &fields)?.tables().to_vec();
        if job.cluster.elastic && tables.iter().any(|t| t.sync) {
            let message = "the model's dense layers are synchronous (cluster.dense), and a synchronous round waits for a fixed set of workers: set cluster.dense = \"staleness\"".to_string();
            return Err(ConfigError::Invalid { field: "cluster.elastic", message }.into());
        }
        let pieces_left =
            job.cluster.elastic.then(|| super::pieces::Pool::new(job.cluster.pieces(), job.train.passes).cut());
        // A checkpoint store that cannot be reached (or is not built in) fails now, not at the
        // first checkpoint.
        for dir in [&job.checkpoint.dir, &job.train.save].into_iter().flatten() {
            if starling_fs::remote::is_url_path(dir) {
                checkpoint::is_complete(dir)?;
            }
        }
        let mut plan = Plan {
            job,
            servers,
            workers,
            tables,
            fields,
            map: ShardMap::even(servers),
            token,
            start_clocks: vec![0; workers],
            resume_from: None,
            recovering: None,
            pieces_left,
        };
        plan.find_resume()?;
        Ok(plan)
    }

    /// Makes this the plan of a coordinator replacing a dead one: it goes back to the newest
    /// checkpoint the job wrote (with `checkpoint.resume = false`, only one written since the
    /// job started counts), else to where the job started.
    pub fn recover(&mut self, r: Recovering) -> Result<(), ClusterError> {
        self.recovering = Some(r);
        let ck = &self.job.checkpoint;
        if let (Some(root), false) = (ck.dir.clone(), ck.resume) {
            let skip = &mut |dir: &Path, e: &starling_ps::PsError| {
                crate::errln!("coordinator: passing over checkpoint {} for an older one: {e}", dir.display())
            };
            if let Some((dir, manifest)) = checkpoint::latest(&root, skip)? {
                let same_workers = manifest.worker_clocks.len() == self.workers || self.job.cluster.elastic;
                if manifest.created_unix >= r.since_unix && same_workers {
                    self.check(&dir, &manifest)?;
                    self.start_from(dir, &manifest)?;
                }
            }
        }
        Ok(())
    }

    /// The newest checkpoint of `checkpoint.dir` (positions and rows), or `train.init_model` (rows only).
    fn find_resume(&mut self) -> Result<(), ClusterError> {
        let ck = &self.job.checkpoint;
        if let (Some(root), true) = (&ck.dir, ck.resume) {
            let skip = &mut |dir: &Path, e: &starling_ps::PsError| {
                crate::errln!("coordinator: passing over checkpoint {} for an older one: {e}", dir.display())
            };
            if let Some((dir, manifest)) = checkpoint::latest(root, skip)? {
                self.check(&dir, &manifest)?;
                if manifest.worker_clocks.len() != self.workers && !self.job.cluster.elastic {
                    return Err(ClusterError::Incompatible {
                        path: dir.display().to_string(),
                        message: format!(
                            "it holds the positions of {} workers and the job has {}; resume with the same number of workers, or start it with train.init_model to keep only its weights",
                            manifest.worker_clocks.len(),
                            self.workers
                        ),
                    });
                }
                crate::errln!(
                    "coordinator: resuming from {} (step {}, written by {} servers)",
                    dir.display(),
                    manifest.step,
                    manifest.servers
                );
                self.start_from(dir, &manifest)?;
                return Ok(());
            }
        }
        if let Some(init) = self.job.train.init_model.clone() {
            let manifest = checkpoint::read_manifest(&init)?;
            self.check(&init, &manifest)?;
            self.resume_from = Some(init);
        }
        Ok(())
    }

    /// Goes on from the checkpoint in `dir`: its rows, and its workers' positions in the input.
    fn start_from(&mut self, dir: PathBuf, m: &Manifest) -> Result<(), ClusterError> {
        let incompatible = |message: &str| ClusterError::Incompatible {
            path: dir.display().to_string(),
            message: message.to_string(),
        };
        match (&m.pieces_left, self.job.cluster.elastic) {
            (Some(left), true) => {
                // The pieces are the writer's: cut the input as it did, and read them in the
                // batches their positions count.
                let writer = JobConfig::from_toml(&m.job, "the checkpoint's job")?;
                let (theirs, ours) = (writer.batch_size(true, writer.cluster.workers), self.job.batch_size(true, self.workers));
                if theirs != ours {
                    return Err(incompatible(&format!("its positions count batches of {theirs} examples and this job's batches have {ours}; set train.batch_size = {theirs}")));
                }
                self.job.cluster.input_pieces = writer.cluster.pieces();
                // Workers may have joined or left since: every one starts level with the furthest.
                self.start_clocks = vec![m.step; self.workers];
                self.pieces_left = Some(left.clone());
            }
            (None, false) => self.start_clocks = m.worker_clocks.clone(),
            (None, true) => return Err(incompatible("it was written by a job whose workers read fixed slices of the input; resume it with cluster.elastic = false, or start with train.init_model to keep only its weights")),
            (Some(_), false) => return Err(incompatible("it was written by an elastic job (cluster.elastic); resume it with cluster.elastic = true, or start with train.init_model to keep only its weights")),
        }
        self.resume_from = Some(dir);
        Ok(())
    }

    /// A checkpoint's tables must be this job's tables (same shape and optimizer state layout).
    fn check(&self, dir: &std::path::Path, m: &Manifest) -> Result<(), ClusterError> {
        let same = m.tables.len() == self.tables.len()
            && m.tables.iter().zip(&self.tables).all(|(a, b)| {
                a.dim == b.dim
                    && a.row_len() == b.row_len()
                    && std::mem::discriminant(&a.optimizer) == std::mem::discriminant(&b.optimizer)
                    && a.init == b.init
            });
        if same {
            Ok(())
        } else {
            Err(ClusterError::Incompatible {
                path: dir.display().to_string(),
                message: format!(
                    "its tables ({}) differ from the job's ({}); a checkpoint resumes only the job that wrote it (or start afresh with checkpoint.resume = false or another checkpoint.dir)",
                    list_tables(&m.tables),
                    list_tables(&self.tables)
                ),
            })
        }
    }
}

/// Tables for a message: `weights: 9 weights per row, adagrad, ...; ...`.
fn list_tables(tables: &[TableSpec]) -> String {
    tables.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
