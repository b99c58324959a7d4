"""Starling from Python: train large sparse models (LR, FM, FFM) with the Rust trainer.

    import starling
    model = starling.train({"model": {"kind": "fm", "k": 8}}, table)   # pyarrow / pandas / numpy
    p = model.predict(table)                                            # numpy array
    model.save("fm.model")                                              # the CLI reads it
    model = starling.Model.load("fm.model")

Data is anything `pyarrow.table()` takes (a pyarrow Table or RecordBatch, a pandas DataFrame, a
dict of arrays), or `(X, y)` numpy arrays. Columns map to features as Parquet columns do in the
CLI (`[features.columns]`, docs/input-formats.md): Spark ML vectors, lists of ids or values,
numeric and categorical columns. The Spark estimator is in `starling.spark`.
"""
import numpy as np
import pyarrow as pa

from . import _config
from ._native import Model as _NativeModel
from ._native import __version__
from ._native import train as _train

__all__ = ["train", "Model", "to_batches", "__version__"]


def to_batches(data, label="label"):
    """pyarrow record batches of `data`: a Table, a RecordBatch, a list of batches, a pandas
    DataFrame, a dict of arrays, or a tuple `(X, y)` of numpy arrays (X 2-D: a column `features`
    of dense float lists; y the label column)."""
    if isinstance(data, pa.RecordBatch):
        return [data]
    if isinstance(data, (list,)) and data and all(isinstance(b, pa.RecordBatch) for b in data):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0], dtype=np.float64), np.asarray(data[1], dtype=np.float64)
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"(X, y) must be a 2-D X and a 1-D y of as many rows, got {x.shape} and {y.shape}")
        flat = pa.array(x.reshape(-1), type=pa.float64())
        offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
        data = pa.table({label: pa.array(y), "features": pa.ListArray.from_arrays(offsets, flat)})
    if not isinstance(data, pa.Table):
        data = pa.table(data)
    return data.to_batches()


class Model:
    """A trained model: predict, evaluate, save; `Model.load` reads model files and distributed
    checkpoints written by the CLI, a cluster or Spark."""

    def __init__(self, native, report=None):
        self._m = native
        self.report = report or {}

    @staticmethod
    def load(path):
        """Loads a model file or checkpoint directory."""
        return Model(_NativeModel.load(str(path)))

    def save(self, path):
        """Saves the model where the CLI (`starling predict`/`eval`) can read it."""
        self._m.save(str(path))

    def predict(self, data):
        """Predictions (probabilities for logistic loss) of every row, as a numpy array; the
        label column may be missing."""
        return np.asarray(self._m.predict(to_batches(data, self.label)), dtype=np.float32)

    def evaluate(self, data):
        """Metrics on labelled data: count, logloss, auc, rmse, accuracy."""
        return self._m.evaluate(to_batches(data, self.label))

    @property
    def job(self):
        """The job the model was trained with, as TOML."""
        return self._m.job

    @property
    def label(self):
        """The label column's name."""
        return self._m.label

    @property
    def passes_done(self):
        return self._m.passes_done

    @property
    def examples_seen(self):
        return self._m.examples_seen


def train(config=None, data=None, test=None, quiet=True, **options):
    """Trains a model and returns it (its `report` holds the training figures).

    config: a dict of job sections ({"model": {"kind": "fm"}, "optimizer": {...}}), TOML text, a
    path to a job file, or None for the defaults. options: more sections, merged over config.
    data: the training data (see `to_batches`), or None to read the files the job's [data] names.
    test: holdout data scored at the end.
    """
    toml = _config.to_toml(config)
    parsed = _config.loads(toml)
    if options:
        parsed = _config.merge(parsed, options)
        toml = _config.dumps(parsed)
    label = parsed.get("features", {}).get("columns", {}).get("label", "label")
    batches = None if data is None else to_batches(data, label)
    test_batches = None if test is None else to_batches(test, label)
    native, report = _train(toml, batches, test_batches, quiet)
    return Model(native, report)
