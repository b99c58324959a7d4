"""The Python examples of README.md and docs/python.md run as written, on a9a (the Rust tests run
the shell commands of every doc). `table`, `train_table`, `test_table` are a9a as pyarrow tables,
`df`, `train_df`, `test_df` as Spark DataFrames; each block runs in a fresh directory."""
import pathlib
import re

import pytest

from spark_util import a9a as spark_a9a, session

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python_blocks(doc):
    text = (ROOT / doc).read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def spark():
    s = session("local[2]")
    yield s
    s.stop()


@pytest.mark.parametrize("doc", ["README.md", "docs/python.md"])
def test_python_examples_run(doc, a9a, spark, tmp_path, monkeypatch):
    blocks = python_blocks(doc)
    assert blocks, f"{doc} shows no Python example"
    train, test = a9a
    frames = {"df": spark_a9a(spark, "a9a", partitions=2), "test_df": spark_a9a(spark, "a9a.t")}
    frames["train_df"] = frames["df"]
    for i, code in enumerate(blocks):
        work = tmp_path / f"block{i}"
        work.mkdir()
        monkeypatch.chdir(work)
        scope = {"table": train, "train_table": train, "test_table": test, **frames}
        try:
            exec(compile(code, f"{doc} (python block {i + 1})", "exec"), scope)
        except Exception as e:  # noqa: BLE001 - the message names the doc and block
            pytest.fail(f"{doc}, python block {i + 1} failed: {type(e).__name__}: {e}\n{code}")
