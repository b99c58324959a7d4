"""Shared fixtures: the a9a data of ../shared/data as pyarrow tables."""
import os
import pathlib

import pyarrow as pa
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def read_libsvm(path):
    """A LibSVM file as a table: label (double) and features (list of int64 ids; a9a's values are all 1)."""
    labels, offsets, ids = [], [0], []
    with open(path) as fh:
        for line in fh:
            tok = line.split()
            labels.append(float(tok[0]))
            ids.extend(int(t.split(":")[0]) for t in tok[1:])
            offsets.append(len(ids))
    features = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int64()))
    return pa.table({"label": pa.array(labels), "features": features})


@pytest.fixture(scope="session")
def a9a():
    train, test = SHARED / "a9a" / "a9a", SHARED / "a9a" / "a9a.t"
    assert train.exists(), f"{train} is missing: the tests expect ../shared/data beside the checkout"
    return read_libsvm(train), read_libsvm(test)


@pytest.fixture(scope="session")
def starling_bin():
    """The CLI binary the Rust tests built (cargo test runs before pytest in scripts/test.sh)."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("debug", "release"):
        b = target / profile / "starling"
        if b.exists():
            return str(b)
    pytest.fail(f"no starling binary under {target}: build it with cargo first")
