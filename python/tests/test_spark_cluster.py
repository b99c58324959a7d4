"""The Spark estimator in local-cluster[2,1,1024]: two executor JVMs, a worker in each."""
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
