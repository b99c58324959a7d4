"""Starling as a Spark ML estimator: training runs inside Spark, across the executors.

    from starling.spark import StarlingClassifier
    clf = StarlingClassifier(labelCol="label", featuresCol="features", modelKind="fm", k=8)
    model = clf.fit(train_df)                 # a barrier stage: one Starling worker per task
    scored = model.transform(test_df)         # adds `prediction` and `probability`
    model.save("/models/fm")                  # /models/fm/starling.model is the CLI's format

How `fit` runs: the DataFrame is coalesced to at most as many partitions as Spark has free task
slots, then one barrier stage (`mapInArrow(..., barrier=True)`) runs one task per partition. Each
task runs a Starling worker on its partition's Arrow record batches (no copy into Python objects)
and `serversPerTask` parameter-server shards; the task of partition 0 also hosts the coordinator.
Tasks find the coordinator with `BarrierTaskContext.allGather`. The trained model is written as a
distributed checkpoint to `checkpointDir` (a directory every executor can reach: local in
`local[...]`/`local-cluster[...]`, a shared mount on a real cluster); with `checkpointInterval`
steps set, a stage retried by Spark resumes from the last checkpoint there.

Input columns: `featuresCol` (a Spark ML vector, or an array of ids or values) with `labelCol`;
or, with `featuresCol` unset, every other column (raw categorical and numeric columns are hashed
by Starling's feature pipeline, vectors and arrays as above). Job options without a param of
their own go in `config`, a dict of job sections (`{"optimizer": {"name": "ftrl", "alpha": 0.1}}`).
"""
import json
import os
import secrets
import shutil
import tempfile

import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasLabelCol, HasPredictionCol, HasProbabilityCol
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, DoubleType, StringType, StructField, StructType

from . import Model as _Model
from . import _config
from . import _native

__all__ = ["StarlingClassifier", "StarlingRegressor", "StarlingClassificationModel", "StarlingRegressionModel"]

MODEL_FILE = "starling.model"
PARAMS_FILE = "params.json"


def _opt(name, doc, conv):
    return Param(Params._dummy(), name, doc, typeConverter=conv)


class _StarlingParams(HasLabelCol, HasPredictionCol):
    featuresCol = _opt("featuresCol", "the features column (vector or array); unset: every other column", TypeConverters.toString)
    modelKind = _opt("modelKind", "lr, fm or ffm", TypeConverters.toString)
    k = _opt("k", "factor size of FM and FFM", TypeConverters.toInt)
    optimizer = _opt("optimizer", "sgd, adagrad, ftrl or adam", TypeConverters.toString)
    learningRate = _opt("learningRate", "learning rate (lr; FTRL's alpha)", TypeConverters.toFloat)
    regParam = _opt("regParam", "L2 regularization", TypeConverters.toFloat)
    passes = _opt("passes", "passes over the data", TypeConverters.toInt)
    hashBits = _opt("hashBits", "keys folded into 2^hashBits rows (0: no folding)", TypeConverters.toInt)
    batchSize = _opt("batchSize", "examples per worker step", TypeConverters.toInt)
    staleness = _opt("staleness", "consistency: 0 BSP, N SSP, -1 ASP (unbounded)", TypeConverters.toInt)
    numWorkers = _opt("numWorkers", "Starling workers (barrier tasks); default: the free task slots", TypeConverters.toInt)
    serversPerTask = _opt("serversPerTask", "parameter-server shards each task runs", TypeConverters.toInt)
    checkpointDir = _opt("checkpointDir", "directory every executor can reach, for checkpoints and the model", TypeConverters.toString)
    checkpointInterval = _opt("checkpointInterval", "steps between checkpoints (0: only the final model)", TypeConverters.toInt)
    config = _opt("config", "other job options, as a dict of sections or TOML text", TypeConverters.identity)

    def __init__(self):
        super().__init__()
        self._setDefault(labelCol="label", predictionCol="prediction", serversPerTask=1, checkpointInterval=0,
                         config={})

    def _job(self, loss):
        """The job dict these params describe, `config` first and the params over it."""
        cfg = self.getOrDefault(self.config)
        job = _config.loads(cfg) if isinstance(cfg, str) else dict(cfg or {})
        section = lambda name: job.setdefault(name, {})  # noqa: E731
        section("model")["loss"] = loss
        section("features").setdefault("columns", {})["label"] = self.getOrDefault(self.labelCol)
        for param, (sec, key) in {
            "modelKind": ("model", "kind"), "k": ("model", "k"), "passes": ("train", "passes"),
            "hashBits": ("features", "hash_bits"), "batchSize": ("train", "batch_size"),
        }.items():
            if self.isDefined(getattr(self, param)):
                section(sec)[key] = self.getOrDefault(getattr(self, param))
        opt = section("optimizer")
        if self.isDefined(self.optimizer):
            opt.clear()
            opt["name"] = self.getOrDefault(self.optimizer)
        opt.setdefault("name", "adagrad")
        if self.isDefined(self.learningRate):
            opt["alpha" if opt["name"] == "ftrl" else "lr"] = self.getOrDefault(self.learningRate)
        if self.isDefined(self.regParam):
            opt["l2"] = self.getOrDefault(self.regParam)
        if self.isDefined(self.staleness):
            s = self.getOrDefault(self.staleness)
            section("cluster")["staleness"] = "inf" if s < 0 else s
        return job


def _slots(spark):
    sc = spark.sparkContext
    jsc = sc._jsc.sc()
    return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().resourceProfileFromId(0)))


def _check_cluster(spark, workers):
    """Fails at once where a barrier stage would fail late or loop: dynamic allocation, or more
    workers than free task slots (Spark would retry the stage every 15 s for 10 minutes)."""
    if spark.conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        raise ValueError("Starling trains in a barrier stage, which Spark refuses under dynamic allocation: "
                         "set spark.dynamicAllocation.enabled=false for this application")
    slots = _slots(spark)
    if workers > slots:
        raise ValueError(f"numWorkers = {workers} needs {workers} free task slots at once, and this Spark "
                         f"application has {slots}: lower numWorkers or add executors")
    return slots


def _train_task(resolved, fields, world, servers, token, save_dir, schema_bytes):
    """The function each barrier task runs over its partition's record batches."""
    def run(batches):
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        rank = ctx.partitionId()
        host = ctx.getTaskInfos()[rank].address.rsplit(":", 1)[0] or "127.0.0.1"
        coord = None
        if rank == 0:
            coord = _native.Coordinator.start(resolved, fields, world * servers, world, token, f"{host}:0")
        addresses = ctx.allGather(f"{host}:{coord.port}" if coord else "")
        data = list(batches)
        if not data:
            schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
            data = [pa.RecordBatch.from_pylist([], schema=schema)]
        _native.run_task(addresses[0], token, data, servers, host)
        if coord is None:
            return
        report = coord.join()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, MODEL_FILE)
            _native.Model.load(save_dir).save(path)
            with open(path, "rb") as fh:
                model = fh.read()
        yield pa.RecordBatch.from_pydict({"model": [model], "report": [report]})

    return run


class _StarlingEstimator(Estimator, _StarlingParams):
    _loss = "logistic"

    def _fit(self, dataset):
        spark = SparkSession.getActiveSession() or dataset.sparkSession
        label = self.getOrDefault(self.labelCol)
        cols = [label, self.getOrDefault(self.featuresCol)] if self.isDefined(self.featuresCol) else dataset.columns
        df = dataset.select(*cols)
        parts = df.rdd.getNumPartitions()
        workers = self.getOrDefault(self.numWorkers) if self.isDefined(self.numWorkers) else None
        slots = _check_cluster(spark, workers or 1)
        world = min(workers or slots, parts) if parts else 1
        if parts != world:
            df = df.coalesce(world) if parts > world else df.repartition(world)
        job = self._job(self._loss)
        ck = self.getOrDefault(self.checkpointDir) if self.isDefined(self.checkpointDir) else None
        own_dir = ck is None
        ck = ck or tempfile.mkdtemp(prefix="starling-spark-")
        save_dir = os.path.join(ck, "model")
        shutil.rmtree(save_dir, ignore_errors=True)
        job.setdefault("train", {})["save"] = save_dir
        interval = self.getOrDefault(self.checkpointInterval)
        if interval > 0:
            job.setdefault("checkpoint", {}).update(dir=os.path.join(ck, "checkpoints"), every_steps=interval)
        schema = df.limit(0).toArrow().schema
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        resolved, fields = _native.resolve(_config.dumps(job), empty)
        token = secrets.token_hex(16)
        servers = self.getOrDefault(self.serversPerTask)
        out = StructType([StructField("model", BinaryType()), StructField("report", StringType())])
        task = _train_task(resolved, fields, world, servers, token, save_dir, schema.serialize().to_pybytes())
        try:
            # The shuffle makes the barrier stage a map stage, which Spark reruns whole when a task
            # fails (a barrier result stage it would not retry); the rerun resumes from checkpoints.
            rows = df.mapInArrow(task, out, barrier=True).repartition(1).collect()
        finally:
            if own_dir:
                shutil.rmtree(ck, ignore_errors=True)
        if len(rows) != 1:
            raise RuntimeError(f"expected the model from the task of rank 0, got {len(rows)} results")
        model = self._model_class()(rows[0]["model"], json.loads(rows[0]["report"]))
        self._copyValues(model)
        return model


class _StarlingModel(Model, _StarlingParams):
    """A fitted model; `transform` adds the prediction column(s)."""

    def __init__(self, model_bytes=None, report=None):
        super().__init__()
        self._bytes = model_bytes
        self.report = report or {}

    @property
    def starling_model(self):
        """The model as a local `starling.Model`."""
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, MODEL_FILE)
            with open(path, "wb") as fh:
                fh.write(self._bytes)
            return _Model.load(path)

    def _outputs(self, p):
        raise NotImplementedError

    def _out_fields(self):
        raise NotImplementedError

    def _transform(self, dataset):
        blob = dataset.sparkSession.sparkContext.broadcast(self._bytes)
        fields = self._out_fields()
        schema = StructType(dataset.schema.fields + [StructField(n, DoubleType()) for n in fields])
        outputs = self._outputs

        def score(batches):
            import numpy as np

            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, MODEL_FILE)
                with open(path, "wb") as fh:
                    fh.write(blob.value)
                model = _Model.load(path)
            for b in batches:
                p = model.predict(b).astype(np.float64) if b.num_rows else np.zeros(0)
                cols = list(b.columns) + [pa.array(c, pa.float64()) for c in outputs(p)]
                yield pa.RecordBatch.from_arrays(cols, names=list(b.schema.names) + fields)

        return dataset.mapInArrow(score, schema)

    def save(self, path):
        """Writes `path/starling.model` (the CLI's format) and `path/params.json`."""
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, MODEL_FILE), "wb") as fh:
            fh.write(self._bytes)
        params = {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)}
        with open(os.path.join(path, PARAMS_FILE), "w") as fh:
            json.dump({"class": type(self).__name__, "params": params, "report": self.report}, fh, default=str)

    @classmethod
    def load(cls, path):
        """Reads what `save` wrote (or a bare model file written by the CLI)."""
        if os.path.isfile(path):
            model_path, meta = path, {"params": {}, "report": {}}
        else:
            model_path = os.path.join(path, MODEL_FILE)
            with open(os.path.join(path, PARAMS_FILE)) as fh:
                meta = json.load(fh)
        with open(model_path, "rb") as fh:
            m = cls(fh.read(), meta.get("report"))
        for name, value in meta.get("params", {}).items():
            if m.hasParam(name):
                m._set(**{name: value})
        return m


class StarlingClassificationModel(_StarlingModel, HasProbabilityCol):
    """Adds `predictionCol` (0 or 1) and `probabilityCol` (the probability of label 1, a double)."""

    def __init__(self, model_bytes=None, report=None):
        super().__init__(model_bytes, report)
        self._setDefault(probabilityCol="probability")

    def _out_fields(self):
        return [self.getOrDefault(self.predictionCol), self.getOrDefault(self.probabilityCol)]

    def _outputs(self, p):
        return [(p > 0.5).astype("float64"), p]


class StarlingRegressionModel(_StarlingModel):
    """Adds `predictionCol`."""

    def _out_fields(self):
        return [self.getOrDefault(self.predictionCol)]

    def _outputs(self, p):
        return [p]


class StarlingClassifier(_StarlingEstimator, HasProbabilityCol):
    """Binary classification (logistic loss) with LR, FM or FFM; labels > 0 are positive."""

    _loss = "logistic"

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._setDefault(probabilityCol="probability")
        self._set(**self._input_kwargs)

    def _model_class(self):
        return StarlingClassificationModel


class StarlingRegressor(_StarlingEstimator):
    """Regression (squared loss) with LR, FM or FFM."""

    _loss = "squared"

    @keyword_only
    def __init__(self, **kwargs):
        super().__init__()
        self._set(**self._input_kwargs)

    def _model_class(self):
        return StarlingRegressionModel
