//! `starling._native`: the Rust trainer and models for Python. Record batches cross from pyarrow
//! through the Arrow C data interface (no copy); training and prediction run without the GIL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_pyarrow::FromPyArrow;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use starling::cluster::coordinator::{self, JobReport};
use starling::cluster::plan::Plan;
use starling::cluster::{server_role, worker_role, ClusterError};
use starling::config::JobConfig;
use starling::input::Inputs;
use starling::{model_file, predict, trainer, Model};
use starling_core::metrics::Summary;

fn value_error(e: impl std::error::Error + 'static) -> PyErr {
    PyValueError::new_err(starling::error_chain(&e))
}

/// pyarrow record batches as Rust ones (shared buffers, no copy).
fn batches(list: &[Bound<'_, PyAny>]) -> PyResult<Arc<Vec<RecordBatch>>> {
    Ok(Arc::new(list.iter().map(RecordBatch::from_pyarrow_bound).collect::<PyResult<Vec<_>>>()?))
}

fn job_from(toml: &str) -> PyResult<JobConfig> {
    JobConfig::from_toml(toml, "passed from Python").map_err(value_error)
}

fn summary(s: &Summary) -> HashMap<String, f64> {
    let mut m = HashMap::from([
        ("count".to_string(), s.count as f64),
        ("logloss".to_string(), s.logloss),
        ("rmse".to_string(), s.rmse),
        ("accuracy".to_string(), s.accuracy),
    ]);
    if let Some(auc) = s.auc {
        m.insert("auc".into(), auc);
    }
    m
}

/// A trained model: weights with optimizer state, and the job that says how to read its input.
#[pyclass(name = "Model", module = "starling._native")]
struct PyModel {
    inner: Model,
}

#[pymethods]
impl PyModel {
    /// Loads a model file or a distributed checkpoint directory, as `starling predict` does.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| model_file::load(&path)).map_err(|e| PyOSError::new_err(starling::error_chain(&e)))?;
        Ok(PyModel { inner })
    }

    /// Saves the model in the format the CLI reads (temp file, fsync, rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| model_file::save(&self.inner, &path)).map_err(|e| PyOSError::new_err(starling::error_chain(&e)))
    }

    /// Predictions (probabilities for logistic loss) of every row of `batches`, in order; the
    /// label column may be missing.
    fn predict(&self, py: Python<'_>, batches: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<f32>> {
        let data = self::batches(&batches)?;
        py.detach(|| {
            let mut job = self.inner.job.clone();
            let inputs = Inputs::from_batches(&mut job, data, false)?;
            let mut out = Vec::new();
            predict::predict_each(&self.inner, &inputs, |p| {
                out.push(p);
                Ok(())
            })?;
            Ok::<_, starling::input::InputError>(out)
        })
        .map_err(value_error)
    }

    /// Metrics (count, logloss, auc, rmse, accuracy) on labelled `batches`.
    fn evaluate(&self, py: Python<'_>, batches: Vec<Bound<'_, PyAny>>) -> PyResult<HashMap<String, f64>> {
        let data = self::batches(&batches)?;
        let s = py
            .detach(|| {
                let mut job = self.inner.job.clone();
                let inputs = Inputs::from_batches(&mut job, data, true)?;
                predict::predict_each(&self.inner, &inputs, |_| Ok(()))
            })
            .map_err(value_error)?;
        Ok(summary(&s))
    }

    /// The job the model was trained with, as TOML.
    #[getter]
    fn job(&self) -> String {
        self.inner.job.to_toml()
    }

    /// The label column's name (`[features.columns] label`).
    #[getter]
    fn label(&self) -> String {
        self.inner.job.features.columns.label.clone()
    }

    /// Training passes done.
    #[getter]
    fn passes_done(&self) -> u32 {
        self.inner.passes_done
    }

    /// Training examples seen.
    #[getter]
    fn examples_seen(&self) -> u64 {
        self.inner.examples_seen
    }
}

/// Trains the job in `job_toml`: on `batches` (with holdout `test`) when given, else on the
/// files its `[data]` names. Returns the model and the report (a dict).
#[pyfunction]
#[pyo3(signature = (job_toml, batches=None, test=None, quiet=true))]
fn train(
    py: Python<'_>,
    job_toml: &str,
    batches: Option<Vec<Bound<'_, PyAny>>>,
    test: Option<Vec<Bound<'_, PyAny>>>,
    quiet: bool,
) -> PyResult<(PyModel, HashMap<String, Py<PyAny>>)> {
    let job = job_from(job_toml)?;
    let train_data = batches.as_deref().map(self::batches).transpose()?;
    let test_data = test.as_deref().map(self::batches).transpose()?;
    let (model, report) = py
        .detach(|| -> Result<_, trainer::TrainError> {
            let Some(data) = train_data else { return trainer::train(&job, quiet) };
            let mut job = job;
            job.data.train.clear();
            job.data.test.clear();
            let inputs = Inputs::from_batches(&mut job, data, true)?;
            let test_inputs = match test_data {
                Some(t) => Some(Inputs::from_batches(&mut job.clone(), t, true)?),
                None => None,
            };
            trainer::train_on(job, &inputs, test_inputs.as_ref(), None, quiet)
        })
        .map_err(value_error)?;
    let mut out: HashMap<String, Py<PyAny>> = HashMap::new();
    out.insert("train_examples".into(), report.train_examples.into_pyobject(py)?.into_any().unbind());
    out.insert("train_seconds".into(), report.train_seconds.into_pyobject(py)?.into_any().unbind());
    out.insert("progressive".into(), summary(&report.progressive).into_pyobject(py)?.into_any().unbind());
    if let Some(t) = &report.test {
        out.insert("test".into(), summary(t).into_pyobject(py)?.into_any().unbind());
    }
    Ok((PyModel { inner: model }, out))
}

/// The input's field names and the bias field, as `resolve` hands them to Python and Python
/// back to `Coordinator.start`.
type FieldList = (Vec<String>, Option<u32>);

/// The job `job_toml` with its `[features]` resolved against the columns of `schema_batch` (an
/// empty batch with the training data's schema), and the fields the pipeline makes:
/// what every Spark task and the coordinator must agree on.
#[pyfunction]
fn resolve(job_toml: &str, schema_batch: Bound<'_, PyAny>) -> PyResult<(String, FieldList)> {
    let mut job = job_from(job_toml)?;
    job.data.train.clear();
    job.data.test.clear();
    let batch = RecordBatch::from_pyarrow_bound(&schema_batch)?;
    let inputs = Inputs::from_batches(&mut job, Arc::new(vec![batch]), true).map_err(value_error)?;
    job.validate().map_err(value_error)?;
    let fields = inputs.fields();
    Ok((job.to_toml(), (fields.names, fields.bias)))
}

/// A coordinator running in this process (a Spark barrier task of rank 0 hosts it).
#[pyclass(module = "starling._native")]
struct Coordinator {
    port: u16,
    handle: std::sync::Mutex<Option<std::thread::JoinHandle<Result<JobReport, ClusterError>>>>,
}

#[pymethods]
impl Coordinator {
    /// Listens on `bind` (`host:0` picks a free port) and runs the coordinator of a job already
    /// resolved (see `resolve`) for `servers` servers and `workers` workers in the background.
    #[staticmethod]
    fn start(
        job_toml: &str,
        fields: FieldList,
        servers: usize,
        workers: usize,
        token: &str,
        bind: &str,
    ) -> PyResult<Self> {
        let job = job_from(job_toml)?;
        if job.cluster.tls_files().is_some() {
            // The tasks' servers and workers have no certificates to present yet.
            return Err(PyValueError::new_err(
                "cluster.tls_cert: TLS is not supported for jobs run inside Spark yet; run the job with `starling launch` or unset cluster.tls_*",
            ));
        }
        if job.cluster.elastic {
            // Each Spark task trains its own partition; Spark itself grows and shrinks the stage.
            return Err(PyValueError::new_err(
                "cluster.elastic: a job inside Spark trains each task's own partition, so its workers cannot take pieces of the input; unset cluster.elastic, or run the job with `starling launch`",
            ));
        }
        let fields = starling_core::graph::Fields { names: fields.0, bias: fields.1 };
        let plan = Plan::resolved(job, servers, workers, token.as_bytes().to_vec(), fields).map_err(value_error)?;
        let listener = std::net::TcpListener::bind(bind)
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {bind}: {e}")))?;
        let port = listener.local_addr().map_err(|e| PyOSError::new_err(e.to_string()))?.port();
        let handle = std::thread::spawn(move || coordinator::run(plan, listener));
        Ok(Coordinator { port, handle: std::sync::Mutex::new(Some(handle)) })
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the end of the job; returns the report as JSON (raises if the job failed).
    fn join(&self, py: Python<'_>) -> PyResult<String> {
        let handle = self.handle.lock().map_err(|_| PyValueError::new_err("poisoned"))?.take();
        let Some(handle) = handle else { return Err(PyValueError::new_err("the coordinator was joined already")) };
        let report = py
            .detach(|| handle.join())
            .map_err(|_| PyValueError::new_err("the coordinator thread panicked"))?
            .map_err(value_error)?;
        Ok(starling::report::job_json(&report))
    }
}

/// One Spark task's share of a cluster job: `servers` parameter-server shards in background
/// threads (listening on `host`), and a worker on `batches` (the task's partition) in this
/// thread, all registered with the coordinator at `coordinator`. Returns when the job ends.
#[pyfunction]
fn run_task(
    py: Python<'_>,
    coordinator: String,
    token: &str,
    batches: Vec<Bound<'_, PyAny>>,
    servers: usize,
    host: &str,
) -> PyResult<()> {
    let data = self::batches(&batches)?;
    let token = token.as_bytes().to_vec();
    let host = host.to_string();
    py.detach(move || -> Result<(), ClusterError> {
        let mut shards = Vec::new();
        for _ in 0..servers {
            let opts = server_role::ServerOptions {
                coordinator: coordinator.clone(),
                bind: format!("{host}:0"),
                advertise: None,
                token: token.clone(),
                rank_file: None,
                slot: None,
                tls: None,
            };
            shards.push(std::thread::spawn(move || server_role::run(&opts)));
        }
        let worker = worker_role::run_on(
            &worker_role::WorkerOptions { coordinator, token, rank_file: None, slot: None, tls: None },
            Some(data),
        );
        let mut first_error = worker.err();
        for s in shards {
            match s.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(ClusterError::Failed("a server thread panicked".into()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
    .map_err(value_error)
}

/// The native part of the `starling` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(run_task, m)?)?;
    m.add_class::<Coordinator>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
