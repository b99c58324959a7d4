#!/usr/bin/env bash
# Every test: installs what the tests need (the Python venv with pyspark, pyarrow, pandas<3,
# maturin: scripts/pyenv.sh), runs the Rust workspace's tests (some start real Spark sessions
# through the venv), installs the Python package (pip install ./python) and runs its tests.
# .ci/run calls this, then the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
STARLING_PYTHON="$(bash scripts/pyenv.sh)"
export STARLING_PYTHON PYSPARK_PYTHON="$STARLING_PYTHON" SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
cargo test --workspace --locked "$@"
# Object store input (s3, gs, az, http, hdfs) is a build feature: its tests run against a local
# S3 server (moto) and an unreachable HDFS name node.
cargo test --locked -p starling --features hdfs --test object_store
# The Python package, built as a user installs it; its tests use the CLI the Rust tests built.
CACHE="${STARLING_CACHE:-$HOME/.cache/starling}"
CARGO_TARGET_DIR="$CACHE/python-target" "$STARLING_PYTHON" -m pip install -q ./python
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" "$STARLING_PYTHON" -m pytest -q python/tests
