//! `starling`: train, evaluate and use sparse models (LR, FM, FFM) from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::de::{DeserializeOwned, IntoDeserializer};
use starling::config::{DenseRule, JobConfig};
use starling::input::InputError;
use starling::{cluster, model_file, predict, quickstart, report, serve, trainer, tune};
use starling::{errln, out, outln};
use starling_core::{Loss, ModelKind, Optimizer};
use starling_data::synth::{SynthConfig, SynthFormat};
use starling_data::{Format, NumericTransform};
use starling_fs::AtomicFile;

/// Starling: a trainer for very large sparse models (LR, FM, FFM).
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a job config and/or flags (flags override the config file).
    Train(TrainArgs),
    /// Write one prediction per line of the input, using a saved model.
    Predict(PredictArgs),
    /// Print logloss, AUC, RMSE and accuracy of a saved model on labelled data.
    Eval(EvalArgs),
    /// Answer predictions over HTTP (POST /predict), reloading the model when a newer one appears.
    Serve(ServeArgs),
    /// Write synthetic Criteo-like data with a hidden true model (FM beats LR on it).
    Gen(GenArgs),
    /// Generate a default data set, train LR and FM on it, save the FM model and predict with it.
    Quickstart(QuickstartArgs),
    /// Run a job on a local cluster: a coordinator, servers and workers as processes of this host.
    Launch(LaunchArgs),
    /// Train many configurations of a job side by side from one parsed cache and keep the best.
    Tune(TuneArgs),
    /// Print the job config reference (every option, its default and meaning) as Markdown.
    ConfigReference,
    /// Cluster role: resolve the job, register servers and workers, gate clocks, end the job.
    Coordinator(CoordinatorArgs),
    /// Cluster role: hold a share of the model's rows and apply the optimizer to pushed gradients.
    Server(ServerArgs),
    /// Cluster role: train on this worker's slice of the input against the servers.
    Worker(WorkerArgs),
}

#[derive(Args)]
struct LaunchArgs {
    /// Server processes [cluster.servers].
    #[arg(long)]
    servers: Option<usize>,
    /// Worker processes [cluster.workers].
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    job: TrainArgs,
}

#[derive(Args)]
struct TuneArgs {
    /// The base job file (the same as --config).
    #[arg(value_name = "JOB", conflicts_with = "config")]
    job_file: Option<PathBuf>,
    /// The search space: [search], optional [asha] and [params] (see docs/tune.md).
    #[arg(long)]
    space: PathBuf,
    /// Directory for trials.csv, trials.json, best.toml, best.model (and the cache by default).
    #[arg(long, default_value = "starling-tune")]
    out: PathBuf,
    /// Trials running side by side [search.parallel].
    #[arg(long)]
    parallel: Option<usize>,
    /// Trials to run [search.trials].
    #[arg(long)]
    trials: Option<usize>,
    #[command(flatten)]
    job: TrainArgs,
}

#[derive(Args)]
struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, env = "STARLING_BIND", default_value = "0.0.0.0:7070")]
    bind: String,
    /// Server processes to wait for [cluster.servers].
    #[arg(long)]
    servers: Option<usize>,
    /// Worker processes to wait for [cluster.workers].
    #[arg(long)]
    workers: Option<usize>,
    /// Write the bound address here once listening (for launchers).
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// The job's shared secret (default: $STARLING_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// This coordinator replaces one that died in a job started at this Unix time: it rolls
    /// back to the job's newest checkpoint and waits for the live processes to re-register.
    #[arg(long, value_name = "UNIX_SECS")]
    recover_since: Option<u64>,
    /// Restarts the job has used so far, this one included (with --recover-since).
    #[arg(long, default_value_t = 0)]
    restarts_used: u32,
    #[command(flatten)]
    job: TrainArgs,
}

#[derive(Args)]
struct ServerArgs {
    /// Coordinator address.
    #[arg(long, env = "STARLING_COORDINATOR")]
    coordinator: String,
    /// Address to listen on for workers.
    #[arg(long, env = "STARLING_BIND", default_value = "0.0.0.0:7071")]
    bind: String,
    /// Address workers should use for this server (a pod IP or DNS name), if not the bound one.
    #[arg(long, env = "STARLING_ADVERTISE")]
    advertise: Option<String>,
    /// The job's shared secret (default: $STARLING_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Write the server id the coordinator assigns here (for launchers).
    #[arg(long)]
    rank_file: Option<PathBuf>,
    /// Ask for this server id (a lost server's, a StatefulSet pod's ordinal) instead of any free one.
    #[arg(long, env = "STARLING_SLOT")]
    slot: Option<usize>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// This process's TLS identity, when the job has TLS (`cluster.tls_*` on the coordinator).
#[derive(Args)]
struct TlsArgs {
    /// This process's certificate chain (PEM).
    #[arg(long, env = "STARLING_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "STARLING_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The job's CA certificate (PEM): peers must present a certificate it signed.
    #[arg(long, env = "STARLING_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    fn load(self) -> Result<Option<starling_ps::Tls>> {
        match (self.tls_cert, self.tls_key, self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Ok(Some(starling_ps::Tls::load(&starling_ps::TlsFiles { cert, key, ca })?))
            }
            _ => Ok(None),
        }
    }
}

#[derive(Args)]
struct WorkerArgs {
    /// Coordinator address.
    #[arg(long, env = "STARLING_COORDINATOR")]
    coordinator: String,
    /// The job's shared secret (default: $STARLING_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Write the worker rank the coordinator assigns here (for launchers).
    #[arg(long)]
    rank_file: Option<PathBuf>,
    /// Ask for this rank (a lost worker's, an indexed Job's completion index) instead of any free one.
    #[arg(long, env = "STARLING_SLOT")]
    slot: Option<usize>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Options of `starling train`; every one also has a key in the TOML job config.
#[derive(Args)]
struct TrainArgs {
    /// TOML job config; flags given here override its values.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Print the effective job config (every option, as TOML) and exit.
    #[arg(long)]
    print_config: bool,
    /// Training files or directories [data.train].
    #[arg(long, num_args = 1..)]
    train: Vec<PathBuf>,
    /// Holdout files evaluated after training [data.test].
    #[arg(long, num_args = 1..)]
    test: Vec<PathBuf>,
    /// Validation files scored after every pass for early stopping [data.valid].
    #[arg(long, num_args = 1..)]
    valid: Vec<PathBuf>,
    /// Early stopping: stop after N passes without a better validation metric and keep the best
    /// pass's model [train.patience].
    #[arg(long)]
    patience: Option<u32>,
    /// Parse the input once into binary caches in this directory and train from them [data.cache_dir].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Malformed lines to skip and report before failing; 0 stops at the first [features.max_bad_lines].
    #[arg(long)]
    max_bad_lines: Option<u64>,
    /// Input format: libsvm, libffm, criteo, vw, csv or parquet; guessed from the file if unset [features.format].
    #[arg(long)]
    format: Option<String>,
    /// Fold keys into 2^B table rows (0: full 64-bit keys in a hash table) [features.hash_bits].
    #[arg(long)]
    hash_bits: Option<u32>,
    /// Leave out the bias feature [features.bias = false].
    #[arg(long)]
    no_bias: bool,
    /// Cross two fields, like VW -q: `--cross C1,C2` (repeatable) [features.crosses].
    #[arg(long, value_name = "A,B")]
    cross: Vec<String>,
    /// Transform of numeric columns: log_bucket, log1p or raw [features.numeric].
    #[arg(long)]
    numeric: Option<String>,
    /// Model: lr, fm, ffm, wide_deep, deepfm, dcn, dlrm, finalmlp, or graph (the blocks of the
    /// config) [model.kind].
    #[arg(long)]
    model: Option<String>,
    /// Latent dimension of FM/FFM [model.k].
    #[arg(long)]
    k: Option<usize>,
    /// Deep models: embedding size per field [model.embedding_dim].
    #[arg(long)]
    embedding_dim: Option<usize>,
    /// Deep models: hidden layer sizes, comma-separated: `--mlp 400,400,400` [model.mlp].
    #[arg(long, value_name = "N,N,...")]
    mlp: Option<String>,
    /// Deep models: dropout rate after hidden layers [model.dropout].
    #[arg(long)]
    dropout: Option<f32>,
    /// Latent weights start uniform in [-s, s) [model.init_scale].
    #[arg(long, allow_negative_numbers = true)]
    init_scale: Option<f32>,
    /// Loss: logistic or squared [model.loss].
    #[arg(long)]
    loss: Option<String>,
    /// Optimizer: sgd, adagrad, rowwise_adagrad, ftrl or adam [optimizer.name].
    #[arg(long)]
    optimizer: Option<String>,
    /// Step size of any optimizer (FTRL: its alpha) [optimizer.lr].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// L1 penalty (ftrl) [optimizer.l1].
    #[arg(long, allow_negative_numbers = true)]
    l1: Option<f32>,
    /// L2 penalty [optimizer.l2].
    #[arg(long, allow_negative_numbers = true)]
    l2: Option<f32>,
    /// FTRL alpha [optimizer.alpha].
    #[arg(long, allow_negative_numbers = true)]
    alpha: Option<f32>,
    /// FTRL beta [optimizer.beta].
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f32>,
    /// Passes over the training data [train.passes].
    #[arg(long)]
    passes: Option<u32>,
    /// Training threads, Hogwild-style; 1 is deterministic [train.threads].
    #[arg(long)]
    threads: Option<usize>,
    /// Shuffle examples within a window per thread [train.shuffle].
    #[arg(long)]
    shuffle: bool,
    /// Seed of initialisation and shuffling [train.seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate the holdout after every pass [train.eval_each_pass].
    #[arg(long)]
    eval_each_pass: bool,
    /// Save the trained model here [train.save].
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue training a saved model, with its optimizer state [train.init_model].
    #[arg(long)]
    init_model: Option<PathBuf>,
    /// Examples per mini-batch; 1 learns online, 0 picks 1 here and 100 on a cluster (256 for deep models) [train.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Steps a worker may run ahead of the slowest: 0 = BSP, N = SSP, inf = ASP [cluster.staleness].
    #[arg(long)]
    staleness: Option<String>,
    /// Dense layers of deep models: sync (one averaged update per step; with --staleness inf, the
    /// hybrid mode), staleness (as the sparse rows) or auto (sync under BSP) [cluster.dense].
    #[arg(long)]
    dense: Option<DenseRule>,
    /// Directory of periodic checkpoints of a cluster job [checkpoint.dir].
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N steps [checkpoint.every_steps].
    #[arg(long)]
    checkpoint_every_steps: Option<u64>,
    /// Checkpoint every S seconds [checkpoint.every_secs].
    #[arg(long)]
    checkpoint_every_secs: Option<u64>,
    /// Write a JSON report of the run here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress output (results are still printed).
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
struct PredictArgs {
    /// Saved model file.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Input files, in the format the model was trained on.
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    /// Where to write predictions, one per line ('-' for stdout).
    #[arg(long, short = 'o', default_value = "-")]
    out: PathBuf,
    /// Malformed lines to skip before failing.
    #[arg(long, default_value_t = 0)]
    max_bad_lines: u64,
}

#[derive(Args)]
struct ServeArgs {
    /// A model file, a checkpoint, or a directory of checkpoints (its newest complete one);
    /// watched, and reloaded when it changes.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Address to listen on (loopback unless told otherwise; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Rows after which no more requests join a micro-batch.
    #[arg(long, default_value_t = 4096)]
    max_batch_rows: usize,
    /// Longest a request waits for others to join its micro-batch, in microseconds (only
    /// while other requests are arriving).
    #[arg(long, default_value_t = 2000)]
    max_delay_us: u64,
    /// How often the model path is checked for a newer model, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    reload_every_ms: u64,
    /// Requests waiting to be scored before more get 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Threads reading requests; scoring runs on one more.
    #[arg(long, default_value_t = 1)]
    http_threads: usize,
}

#[derive(Args)]
struct EvalArgs {
    /// Saved model file.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Labelled input files, in the format the model was trained on.
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    /// Reading threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Malformed lines to skip before failing.
    #[arg(long, default_value_t = 0)]
    max_bad_lines: u64,
    /// Write the metrics as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
struct GenArgs {
    /// Output directory (train.<ext>, test.<ext>, meta.json).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Training rows.
    #[arg(long, default_value_t = 1_000_000)]
    train_rows: u64,
    /// Test rows.
    #[arg(long, default_value_t = 200_000)]
    test_rows: u64,
    /// Comma-separated formats: criteo, libsvm, libffm, vw, csv.
    #[arg(long, default_value = "criteo")]
    formats: String,
    /// Seed: the same seed and sizes give byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Id space of the LibSVM/libFFM files (ids < 2^B).
    #[arg(long, default_value_t = 24)]
    hash_bits: u32,
    /// Scale of a hidden non-linear term that FM cannot represent and deep models can learn
    /// (0: none; try 1).
    #[arg(long, default_value_t = 0.0)]
    nonlinear: f64,
}

#[derive(Args)]
struct QuickstartArgs {
    /// Working directory for the data, the model and the predictions.
    #[arg(long, default_value = "starling-quickstart")]
    dir: PathBuf,
    /// Training rows to generate (the test set is a quarter of it).
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
}

/// Parses a config enum from its TOML spelling, so flags and config accept the same words.
fn parse_enum<T: DeserializeOwned>(flag: &str, value: &str) -> Result<T> {
    T::deserialize(value.into_deserializer())
        .map_err(|e: serde::de::value::Error| Usage(format!("--{flag} {value}: {e}")).into())
}

/// The job: the config file (if any) with the flags laid over it.
fn job_from(a: &TrainArgs) -> Result<JobConfig> {
    let mut job = match &a.config {
        Some(path) => JobConfig::load(path)?,
        None => JobConfig::default(),
    };
    if !a.train.is_empty() {
        job.data.train = a.train.clone();
    }
    if a.cache_dir.is_some() {
        job.data.cache_dir = a.cache_dir.clone();
    }
    if !a.valid.is_empty() {
        job.data.valid = a.valid.clone();
    }
    if let Some(v) = a.patience {
        job.train.patience = v;
    }
    if !a.test.is_empty() {
        job.data.test = a.test.clone();
    }
    if let Some(v) = a.max_bad_lines {
        job.features.max_bad_lines = v;
    }
    if let Some(f) = &a.format {
        job.features.format = parse_enum::<Format>("format", f)?;
    }
    if let Some(v) = a.hash_bits {
        job.features.hash_bits = v;
    }
    if a.no_bias {
        job.features.bias = false;
    }
    for c in &a.cross {
        let Some((x, y)) = c.split_once(',') else {
            return Err(Usage(format!("--cross {c}: expected two field names separated by a comma, like C1,C2")).into());
        };
        job.features.crosses.push([x.trim().to_string(), y.trim().to_string()]);
    }
    if let Some(v) = &a.numeric {
        job.features.numeric = parse_enum::<NumericTransform>("numeric", v)?;
    }
    if let Some(v) = &a.model {
        job.model.kind = parse_enum::<ModelKind>("model", v)?;
    }
    if let Some(v) = a.k {
        job.model.k = v;
    }
    if let Some(v) = a.embedding_dim {
        job.model.embedding_dim = v;
    }
    if let Some(v) = &a.mlp {
        job.model.mlp = v
            .split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Usage(format!("--mlp {v}: expected layer sizes separated by commas, like 400,400,400")))?;
    }
    if let Some(v) = a.dropout {
        job.model.dropout = v;
    }
    if let Some(v) = a.init_scale {
        job.model.init_scale = v;
    }
    if let Some(v) = &a.loss {
        job.model.loss = parse_enum::<Loss>("loss", v)?;
    }
    if let Some(name) = &a.optimizer {
        // Hyperparameters from the file belong to the file's optimizer: a new name starts from defaults.
        let fresh = Optimizer::default_for(name).ok_or_else(|| {
            Usage(format!("--optimizer {name}: expected sgd, adagrad, rowwise_adagrad, ftrl or adam"))
        })?;
        if std::mem::discriminant(&fresh) != std::mem::discriminant(&job.optimizer) {
            job.optimizer = fresh;
        }
    }
    for (param, value) in [("lr", a.lr), ("l1", a.l1), ("l2", a.l2), ("alpha", a.alpha), ("beta", a.beta)] {
        if let Some(v) = value {
            job.optimizer.set(param, v).map_err(|e| Usage(format!("--{param}: {e}")))?;
        }
    }
    if let Some(v) = a.passes {
        job.train.passes = v;
    }
    if let Some(v) = a.threads {
        job.train.threads = v;
    }
    if a.shuffle {
        job.train.shuffle = true;
    }
    if let Some(v) = a.seed {
        job.train.seed = v;
    }
    if a.eval_each_pass {
        job.train.eval_each_pass = true;
    }
    if a.save.is_some() {
        job.train.save = a.save.clone();
    }
    if a.init_model.is_some() {
        job.train.init_model = a.init_model.clone();
    }
    if let Some(v) = a.batch_size {
        job.train.batch_size = v;
    }
    if let Some(v) = &a.staleness {
        job.cluster.staleness = v.parse().map_err(|e| Usage(format!("--staleness {v}: {e}")))?;
    }
    if let Some(v) = a.dense {
        job.cluster.dense = v;
    }
    if a.checkpoint_dir.is_some() {
        job.checkpoint.dir = a.checkpoint_dir.clone();
    }
    if let Some(v) = a.checkpoint_every_steps {
        job.checkpoint.every_steps = v;
    }
    if let Some(v) = a.checkpoint_every_secs {
        job.checkpoint.every_secs = v;
    }
    job.validate()?;
    Ok(job)
}

fn cmd_tune(mut a: TuneArgs) -> Result<()> {
    if a.job_file.is_some() {
        a.job.config = a.job_file.take();
    }
    let job = job_from(&a.job)?;
    if job.data.train.is_empty() {
        bail!("no training data: give --train FILE... or set [data] train = [...] in the config");
    }
    let mut space = tune::SearchSpace::load(&a.space)?;
    if let Some(p) = a.parallel {
        space.search.parallel = p.max(1);
    }
    if a.trials.is_some() {
        space.search.trials = a.trials;
    }
    let opts = tune::TuneOptions { job, space, out: a.out, quiet: a.job.quiet };
    tune::run(&opts)?;
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let job = job_from(&a)?;
    if a.print_config {
        out!("{}", starling::config::commented_toml(&job));
        return Ok(());
    }
    if job.data.train.is_empty() {
        bail!("no training data: give --train FILE... or set [data] train = [...] in the config");
    }
    check_output(a.report.as_deref())?;
    let (model, rep) = trainer::train(&job, a.quiet)?;
    outln!(
        "trained {} on {} examples in {:.2} s ({:.0} examples/s); progressive logloss {:.5}",
        model.job.model.kind,
        rep.train_examples,
        rep.train_seconds,
        rep.train_examples as f64 / rep.train_seconds.max(1e-9),
        rep.progressive.logloss
    );
    if rep.bad_lines > 0 {
        outln!("skipped {} malformed lines (max_bad_lines = {}):", rep.bad_lines, job.features.max_bad_lines);
        for s in &rep.bad_line_samples {
            outln!("  {s}");
        }
    }
    match (rep.cache_parsed, &job.data.cache_dir) {
        (Some(0), Some(dir)) => outln!("cache: read the input from the existing cache in {}", dir.display()),
        (Some(n), Some(dir)) => outln!("cache: parsed {n} examples into {} (later runs read it)", dir.display()),
        _ => {}
    }
    if let Some(t) = &rep.test {
        outln!("test: {}", trainer::describe(t));
    }
    if let Some(path) = &rep.saved {
        outln!("model saved to {}", path.display());
    }
    if let Some(path) = &a.report {
        report::write(path, &report::train_json(&rep))?;
    }
    Ok(())
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let scored = if a.out == Path::new("-") {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::new(stdout.lock());
        match predict::predict_to(&model, &a.data, a.max_bad_lines, &mut lock) {
            // `starling predict ... | head`: the reader has all it wanted.
            Err(InputError::OutputClosed) => return Ok(()),
            other => other?,
        }
    } else {
        // Written under a temporary name and renamed at the end: a failure leaves the previous
        // file as it was, never partial predictions under its name.
        let mut file = AtomicFile::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
        let s = predict::predict_to(&model, &a.data, a.max_bad_lines, &mut file)?;
        file.commit().with_context(|| format!("writing {}", a.out.display()))?;
        errln!("wrote {} predictions to {}", s.summary.count, a.out.display());
        s
    };
    if let Some(r) = &scored.bad_lines {
        errln!("{r}");
    }
    errln!("against the labels: {}", trainer::describe(&scored.summary));
    Ok(())
}

fn cmd_serve(a: ServeArgs) -> Result<()> {
    let opts = serve::ServeOptions {
        model: a.model,
        addr: a.addr,
        max_body_bytes: a.max_body_bytes,
        limits: serve::Limits { max_rows: a.max_batch_rows.max(1), max_delay: Duration::from_micros(a.max_delay_us) },
        reload_every: Duration::from_millis(a.reload_every_ms.max(1)),
        queue: a.queue,
        http_threads: a.http_threads,
    };
    serve::run(&opts, |m, addr| {
        errln!("serving {} (model version {}) on http://{addr}", m.source.display(), m.version);
    })?;
    Ok(())
}

/// Checks that a result file (`--report`) can be written before the work that fills it.
fn check_output(path: Option<&Path>) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    starling_fs::check_writable(path).with_context(|| format!("cannot write {}", path.display()))
}

/// Loads the model at `path`, saying which checkpoint a directory of checkpoints meant.
fn load_model(path: &Path) -> Result<starling::Model> {
    let resolved = model_file::resolve(path)?;
    if resolved != path {
        errln!("model: {} (the newest complete checkpoint in {})", resolved.display(), path.display());
    }
    Ok(model_file::load(&resolved)?)
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    check_output(a.report.as_deref())?;
    let model = load_model(&a.model)?;
    let scored = predict::evaluate(&model, &a.data, a.threads, a.max_bad_lines, a.quiet)?;
    if let Some(r) = &scored.bad_lines {
        outln!("{r}");
    }
    let s = scored.summary;
    outln!("{}", trainer::describe(&s));
    if let Some(path) = &a.report {
        report::write(path, &(report::summary_json(&s) + "\n"))?;
    }
    Ok(())
}

fn cmd_gen(a: GenArgs) -> Result<()> {
    let formats = a
        .formats
        .split(',')
        .map(|f| f.trim().parse::<SynthFormat>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Usage(format!("--formats: {e}")))?;
    let cfg = SynthConfig {
        train_rows: a.train_rows,
        test_rows: a.test_rows,
        seed: a.seed,
        hash_bits: a.hash_bits,
        formats,
        nonlinear: a.nonlinear,
    };
    let r = quickstart::generate(&cfg, &a.out, false)?;
    outln!(
        "wrote {} train and {} test rows to {}; true model on test: logloss {:.5}, AUC {:.5} (constant prediction: logloss {:.5})",
        r.train_rows, r.test_rows, a.out.display(), r.oracle_logloss, r.oracle_auc, r.constant_logloss
    );
    Ok(())
}

fn cmd_launch(a: LaunchArgs) -> Result<()> {
    let job = job_from(&a.job)?;
    if a.job.print_config {
        out!("{}", starling::config::commented_toml(&job));
        return Ok(());
    }
    let work_dir = std::env::temp_dir().join(format!("starling-launch-{}", std::process::id()));
    let opts = cluster::launch::LaunchOptions {
        servers: a.servers.unwrap_or(job.cluster.servers),
        workers: a.workers.unwrap_or(job.cluster.workers),
        job,
        report: a.job.report.clone(),
        work_dir: work_dir.clone(),
    };
    let result = cluster::launch::run(&opts);
    let _ = std::fs::remove_dir_all(&work_dir);
    Ok(result?)
}

fn cmd_coordinator(a: CoordinatorArgs) -> Result<()> {
    let job = job_from(&a.job)?;
    let token = cluster::token(a.token.as_deref())?;
    let (servers, workers) = (a.servers.unwrap_or(job.cluster.servers), a.workers.unwrap_or(job.cluster.workers));
    check_output(a.job.report.as_deref())?;
    let mut plan = cluster::plan::Plan::new(job, servers, workers, token)?;
    if let Some(since_unix) = a.recover_since {
        plan.recover(cluster::plan::Recovering { since_unix, restarts_used: a.restarts_used })?;
    }
    let rep = cluster::run_coordinator(plan, &a.bind, a.port_file.as_deref())?;
    outln!(
        "trained on {} examples by {} workers in {:.2} s ({:.0} examples/s, {}); progressive logloss {:.5}",
        rep.examples,
        workers,
        rep.train_seconds,
        rep.examples as f64 / rep.train_seconds.max(1e-9),
        rep.mode,
        rep.progressive_logloss
    );
    let t = &rep.traffic;
    let secs = rep.train_seconds.max(1e-9);
    outln!(
        "traffic: pulled {} keys ({:.0} keys/s, {:.1} MB/s), pushed {} keys ({:.0} keys/s, {:.1} MB/s); workers waited {:.2} s on staleness",
        t.keys_pulled,
        t.keys_pulled as f64 / secs,
        t.bytes_pulled as f64 / secs / 1e6,
        t.keys_pushed,
        t.keys_pushed as f64 / secs,
        t.bytes_pushed as f64 / secs / 1e6,
        t.wait.as_secs_f64()
    );
    outln!("staleness at step start (steps behind: count): {} (max {})", t.staleness.summary(), t.staleness.max);
    for (i, s) in rep.servers.iter().enumerate() {
        outln!("server {i}: {} rows, {} keys pulled, {} keys pushed", s.rows, s.keys_pulled, s.keys_pushed);
    }
    for l in &rep.lost_workers {
        outln!("lost worker: {l}");
    }
    for j in &rep.workers_joined {
        outln!("joined: {j}");
    }
    for l in &rep.workers_left {
        outln!("left: {l}");
    }
    for r in &rep.recoveries {
        let how = if r.kind == "replace" { "its replacement went back to" } else { "every table went back to" };
        outln!(
            "recovered: lost {}; {how} {}, {} steps redone, {:.2} s to resume",
            r.lost.join("; "),
            r.to,
            r.steps_redone,
            r.seconds
        );
    }
    if let Some(t) = &rep.test {
        let auc = t.auc.map_or("n/a".to_string(), |a| format!("{a:.5}"));
        outln!(
            "test: {} examples: logloss {:.5}, AUC {auc}, accuracy {:.4}, RMSE {:.5}",
            t.count,
            t.logloss,
            t.accuracy,
            t.rmse
        );
    }
    for c in &rep.checkpoints {
        outln!("checkpoint: {c}");
    }
    if let Some(path) = &a.job.report {
        report::write(path, &report::job_json(&rep))?;
    }
    Ok(())
}

fn cmd_server(a: ServerArgs) -> Result<()> {
    let token = cluster::token(a.token.as_deref())?;
    let opts = cluster::server_role::ServerOptions {
        coordinator: a.coordinator,
        bind: a.bind,
        advertise: a.advertise,
        token,
        rank_file: a.rank_file,
        slot: a.slot,
        tls: a.tls.load()?,
    };
    Ok(cluster::server_role::run(&opts)?)
}

fn cmd_worker(a: WorkerArgs) -> Result<()> {
    let token = cluster::token(a.token.as_deref())?;
    let opts = cluster::worker_role::WorkerOptions {
        coordinator: a.coordinator,
        token,
        rank_file: a.rank_file,
        slot: a.slot,
        tls: a.tls.load()?,
    };
    Ok(cluster::worker_role::run(&opts)?)
}

/// The exit status of a failed command: 128 + the signal for an interrupted one (130 after Ctrl-C,
/// as a shell reports it; 143 after SIGTERM), 2 for a bad flag value, 1 for any other error.
fn exit_code(e: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(cluster::ClusterError::Interrupted(sig)) = c.downcast_ref() {
            return 128 + sig;
        }
        if c.downcast_ref::<Usage>().is_some() {
            return 2;
        }
        cause = c.source();
    }
    1
}

/// A flag with a value it cannot take (`--model svm`): a usage error, as clap's own are.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Tune(a) => cmd_tune(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Serve(a) => cmd_serve(a),
        Command::Gen(a) => cmd_gen(a),
        Command::ConfigReference => {
            out!("{}", starling::config::reference_markdown());
            Ok(())
        }
        Command::Quickstart(a) => quickstart::run(&a.dir, a.rows).map_err(Into::into),
        Command::Launch(a) => cmd_launch(a),
        Command::Coordinator(a) => cmd_coordinator(a),
        Command::Server(a) => cmd_server(a),
        Command::Worker(a) => cmd_worker(a),
    };
    if let Err(e) = result {
        errln!("error: {}", starling::error_chain(e.as_ref()));
        std::process::exit(exit_code(e.as_ref()));
    }
    if let Some(e) = starling::console::stdout_error() {
        errln!("error: writing the output to stdout: {e}");
        std::process::exit(1);
    }
}
