//! `starling._native`: the Rust trainer and models for Python. Record batches cross from pyarrow
//! through the Arrow C data interface (no copy); training and prediction run without the GIL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_pyarrow::FromPyArrow;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use starling::config::JobConfig;
use starling::input::Inputs;
use starling::{model_file, predict, trainer, Model};
use starling_core::metrics::Summary;

/// The message of an error with its chain of causes.
fn message(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        cur = c.source();
    }
    s
}

fn value_error(e: impl std::error::Error) -> PyErr {
    PyValueError::new_err(message(&e))
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
        let inner = py.detach(|| model_file::load(&path)).map_err(|e| PyOSError::new_err(message(&e)))?;
        Ok(PyModel { inner })
    }

    /// Saves the model in the format the CLI reads (temp file, fsync, rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| model_file::save(&self.inner, &path)).map_err(|e| PyOSError::new_err(message(&e)))
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
            trainer::train_on(job, &inputs, test_inputs.as_ref(), quiet)
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

/// The native part of the `starling` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
