"""The Spark estimator in local-cluster[2,1,1024]: two executor JVMs, a worker in each."""
import os
import signal
import subprocess
import threading
import time

import pytest

from spark_util import A9A_PARAMS, A9A_PASSES, a9a, accuracy, session
from starling.spark import StarlingClassifier


@pytest.fixture(scope="module")
def spark():
    s = session("local-cluster[2,1,1024]")
    yield s
    s.stop()


def test_fit_across_two_executors_reaches_the_a9a_accuracy(spark):
    train = a9a(spark, "a9a", partitions=2)
    model = StarlingClassifier(**A9A_PARAMS).fit(train)
    assert model.report["train_examples"] == A9A_PASSES * 32561
    assert accuracy(model.transform(a9a(spark, "a9a.t"))) >= 0.845


def test_a_stage_spark_retries_resumes_from_the_last_checkpoint(spark, tmp_path):
    """Kills the tasks' Python workers once a checkpoint exists: Spark reruns the barrier stage and
    the job resumes from the checkpoint instead of starting over."""
    ck = tmp_path / "ck"
    killed = []

    def kill_the_tasks():
        while not list((ck / "checkpoints").glob("step-*/manifest.toml")):
            time.sleep(0.05)
        daemons = subprocess.run(["pgrep", "-f", "pyspark.daemon"], capture_output=True, text=True).stdout.split()
        for d in daemons:
            for worker in subprocess.run(["pgrep", "-P", d], capture_output=True, text=True).stdout.split():
                os.kill(int(worker), signal.SIGKILL)
                killed.append(worker)

    threading.Thread(target=kill_the_tasks, daemon=True).start()
    params = dict(A9A_PARAMS, passes=30, checkpointDir=str(ck), checkpointInterval=100)
    model = StarlingClassifier(**params).fit(a9a(spark, "a9a", partitions=2))
    assert killed, "no task was killed"
    # The rerun trained only what the checkpoint lacked.
    assert 0 < model.report["train_examples"] < 30 * 32561
    assert accuracy(model.transform(a9a(spark, "a9a.t"))) >= 0.845
