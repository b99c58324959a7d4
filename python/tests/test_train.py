"""starling.train / Model over pyarrow and numpy, against the CLI on the same data."""
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import starling


def test_lr_on_a9a_reaches_liblinear_accuracy_and_predicts_without_labels(a9a):
    train, test = a9a
    model = starling.train({"features": {"hash_bits": 18}}, train, test=test)
    assert model.report["train_examples"] == train.num_rows
    assert model.report["test"]["accuracy"] >= 0.845
    p = model.predict(test.drop(["label"]))
    assert p.shape == (test.num_rows,) and p.dtype == np.float32
    acc = float(np.mean((p > 0.5) == (test["label"].to_numpy() > 0)))
    assert acc == pytest.approx(model.report["test"]["accuracy"], abs=1e-9)


def test_a_model_saved_from_python_is_the_cli_s(a9a, tmp_path, starling_bin):
    train, test = a9a
    model = starling.train({"model": {"kind": "fm", "k": 4}}, train)
    path = tmp_path / "fm.model"
    model.save(path)
    loaded = starling.Model.load(path)
    assert np.array_equal(loaded.predict(test), model.predict(test))
    # The CLI reads the model and the same rows as Parquet, and scores them alike.
    pq.write_table(test, tmp_path / "test.parquet")
    out = subprocess.run([starling_bin, "predict", "--model", str(path), "--data", str(tmp_path / "test.parquet")],
                         check=True, capture_output=True, text=True).stdout
    cli = np.array([float(x) for x in out.split()], dtype=np.float32)
    assert np.array_equal(cli, model.predict(test))


def test_numpy_and_pandas_inputs():
    rng = np.random.default_rng(1)
    x = rng.random((2000, 4))
    y = (x[:, 0] + x[:, 1] > 1).astype(float)
    model = starling.train({"optimizer": {"name": "adagrad", "lr": 0.3}}, (x, y), train={"passes": 5})
    assert model.evaluate((x, y))["auc"] > 0.9
    import pandas as pd

    df = pd.DataFrame({"label": y, "city": np.where(x[:, 0] > 0.5, "a", "b")})
    m = starling.train(None, df)
    assert m.predict(df).shape == (2000,)


def test_bad_config_and_bad_data_are_clear_errors(a9a):
    train, _ = a9a
    with pytest.raises(ValueError, match="lrate"):
        starling.train({"optimizer": {"name": "adagrad", "lrate": 1}}, train)
    with pytest.raises(ValueError, match="no label column"):
        starling.train(None, train.rename_columns(["y", "features"]))
    bad = pa.table({"label": [1.0, None], "c": ["a", "b"]})
    with pytest.raises(ValueError, match="row 2.*label is null"):
        starling.train(None, bad)
