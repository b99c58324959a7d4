#!/usr/bin/env bash
# Every test: installs what the tests need (the Python venv with pyspark, pyarrow, pandas<3,
# maturin: scripts/pyenv.sh), then runs the Rust workspace's tests, which start real Spark
# sessions through it. .ci/run calls this, then the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
STARLING_PYTHON="$(bash scripts/pyenv.sh)"
export STARLING_PYTHON PYSPARK_PYTHON="$STARLING_PYTHON" SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
cargo test --workspace --locked "$@"
