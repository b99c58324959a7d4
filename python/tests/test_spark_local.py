"""The Spark estimator in local[2]: a9a, the model in the CLI, raw categorical columns, fast failures."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import functions as F

from spark_util import A9A_PARAMS, A9A_PASSES, a9a, accuracy, session
from starling.spark import StarlingClassificationModel, StarlingClassifier


@pytest.fixture(scope="module")
def spark():
    s = session("local[2]")
    yield s
    s.stop()


def test_fit_on_a9a_reaches_the_accuracy_and_the_saved_model_predicts_the_same_in_the_cli(spark, tmp_path, starling_bin):
    train, test = a9a(spark, "a9a", partitions=2), a9a(spark, "a9a.t")
    model = StarlingClassifier(**A9A_PARAMS).fit(train)
    assert model.report["train_examples"] == A9A_PASSES * 32561
    scored = model.transform(test)
    assert accuracy(scored) >= 0.845
    model.save(str(tmp_path / "model"))
    again = StarlingClassificationModel.load(str(tmp_path / "model"))
    ours = np.array([r.probability for r in again.transform(test).select("probability").collect()], dtype=np.float32)
    # The CLI loads the saved model and scores the same rows, written by Spark as Parquet.
    test.coalesce(1).write.parquet(str(tmp_path / "test.parquet"))
    out = subprocess.run([starling_bin, "predict", "--model", str(tmp_path / "model" / "starling.model"),
                          "--data", str(tmp_path / "test.parquet")], check=True, capture_output=True, text=True).stdout
    cli = np.array([float(x) for x in out.split()], dtype=np.float32)
    assert len(cli) == 16281
    assert np.array_equal(cli, ours)


def test_raw_categorical_and_numeric_columns_train_an_fm(spark, tmp_path, starling_bin):
    subprocess.run([starling_bin, "gen", "--out", str(tmp_path), "--train-rows", "40000", "--test-rows", "10000",
                    "--formats", "csv"], check=True, capture_output=True)
    read = lambda f: spark.read.option("header", True).csv(str(tmp_path / f)).withColumn(  # noqa: E731
        "Label", F.col("Label").cast("double"))
    train, test = read("train.csv"), read("test.csv")
    assert dict(train.dtypes)["C1"] == "string"
    model = StarlingClassifier(labelCol="Label", modelKind="fm", k=4, passes=2, batchSize=100, hashBits=20).fit(train)
    assert 'kind = "fm"' in model.starling_model.job
    auc = BinaryClassificationEvaluator(labelCol="Label", rawPredictionCol="probability").evaluate(model.transform(test))
    # The CLI on the same CSV files (every column categorical: the same keys) learns as much.
    report = tmp_path / "cli.json"
    subprocess.run([starling_bin, "train", "-q", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                    "--model", "fm", "--k", "4", "--passes", "2", "--batch-size", "100", "--hash-bits", "20",
                    "--report", str(report)], check=True, capture_output=True)
    cli_auc = json.loads(report.read_text())["test"]["auc"]
    assert auc > 0.6 and abs(auc - cli_auc) < 0.02, (auc, cli_auc)


def test_deepfm_trains_on_a_dataframe_and_the_saved_model_predicts_the_same_in_the_cli(spark, tmp_path, starling_bin):
    subprocess.run([starling_bin, "gen", "--out", str(tmp_path), "--train-rows", "20000", "--test-rows", "5000",
                    "--formats", "csv"], check=True, capture_output=True)
    read = lambda f: spark.read.option("header", True).csv(str(tmp_path / f)).withColumn(  # noqa: E731
        "Label", F.col("Label").cast("double"))
    train, test = read("train.csv").repartition(2), read("test.csv")
    config = {"model": {"embedding_dim": 4, "mlp": [16, 8]}}
    model = StarlingClassifier(labelCol="Label", modelKind="deepfm", passes=1, hashBits=18, config=config).fit(train)
    assert 'kind = "deepfm"' in model.starling_model.job
    auc = BinaryClassificationEvaluator(labelCol="Label", rawPredictionCol="probability").evaluate(model.transform(test))
    assert auc > 0.6, auc
    model.save(str(tmp_path / "model"))
    again = StarlingClassificationModel.load(str(tmp_path / "model"))
    ours = np.array([r.probability for r in again.transform(test).select("probability").collect()], dtype=np.float32)
    test.coalesce(1).write.parquet(str(tmp_path / "test.parquet"))
    out = subprocess.run([starling_bin, "predict", "--model", str(tmp_path / "model" / "starling.model"),
                          "--data", str(tmp_path / "test.parquet")], check=True, capture_output=True, text=True).stdout
    cli = np.array([float(x) for x in out.split()], dtype=np.float32)
    assert len(cli) == 5000
    assert np.allclose(cli, ours, rtol=0, atol=1e-6)


def test_more_workers_than_task_slots_fail_at_once(spark):
    start = time.time()
    with pytest.raises(ValueError, match="numWorkers = 8 needs 8 free task slots.*has 2"):
        StarlingClassifier(featuresCol="features", numWorkers=8).fit(a9a(spark, "a9a"))
    assert time.time() - start < 30


def test_dynamic_allocation_fails_at_once():
    # Its own application: dynamic allocation is fixed when Spark starts.
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from pyspark.sql import SparkSession;"
        "from starling.spark import StarlingClassifier;"
        "s = SparkSession.builder.master('local[2]').config('spark.dynamicAllocation.enabled', 'true')"
        ".config('spark.ui.enabled', 'false').getOrCreate();"
        "df = s.createDataFrame([(1.0, 'a'), (0.0, 'b')], ['label', 'c']);"
        "t = time.time()\n"
        "try:\n    StarlingClassifier().fit(df)\nexcept ValueError as e:\n    print('REFUSED', round(time.time() - t, 1), e)\n"
    )
    import os

    out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable))
    line = next((l for l in out.stdout.splitlines() if l.startswith("REFUSED")), None)
    assert line, out.stdout + out.stderr
    assert "dynamic allocation" in line and float(line.split()[1]) < 10, line


def test_an_empty_partition_is_a_worker_with_nothing_to_read(spark):
    df = spark.createDataFrame([(1.0, "a"), (0.0, "b"), (1.0, "a")], ["label", "c"])
    skewed = df.filter("c = 'a'").repartition(2, "c")  # both rows in one partition, none in the other
    assert sorted(skewed.rdd.glom().map(len).collect()) == [0, 2]
    model = StarlingClassifier(passes=2).fit(skewed)
    assert model.report["train_examples"] == 4
    assert model.transform(df).count() == 3
