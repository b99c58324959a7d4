#!/usr/bin/env bash
# Every test: installs what the tests need (the Python venv with pyspark, pyarrow, pandas<3,
# maturin, moto: scripts/pyenv.sh), runs the Rust workspace's tests in one build with every
# feature the tests use (some start real Spark sessions or a local S3 server through the venv,
# and run the commands of README.md and docs/ as written), installs the Python package
# (pip install ./python) and runs its tests. .ci/run calls this, then the linters and the fuzzer.
#
# Needs, besides a Rust toolchain, python3 and Java 17+: ../shared/data beside the checkout (or
# $STARLING_SHARED_DATA), the real data sets some tests read. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${STARLING_SHARED_DATA:-$PWD/../shared/data}"
if [ ! -d "$DATA" ]; then
  echo "test.sh: $DATA is missing: the tests read the data sets of ../shared/data beside the checkout (or set STARLING_SHARED_DATA)" >&2
  exit 1
fi
export STARLING_SHARED_DATA="$(cd "$DATA" && pwd)"
# Debian packages some tests run: openssl (certificates for the TLS tests), util-linux's
# unshare (a small tmpfs in a private mount namespace, for the full-disk test) and curl (the
# HTTP examples of docs/serving.md).
pkgs=()
command -v openssl >/dev/null || pkgs+=(openssl)
command -v curl >/dev/null || pkgs+=(curl)
command -v unshare >/dev/null || pkgs+=(util-linux)
if [ ${#pkgs[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "test.sh: installing ${pkgs[*]}" >&2
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# The venv installs (mostly downloads) while the tests compile.
VENV_OUT="$(mktemp)"
trap 'rm -f "$VENV_OUT"' EXIT
bash scripts/pyenv.sh > "$VENV_OUT" &
PYENV_PID=$!
# One build: object-store input (s3, gs, az, http, hdfs) is a build feature, turned on here for
# the whole workspace so the tests of every crate share one set of artifacts.
FEATURES=(--workspace --locked --features starling/hdfs)
cargo test "${FEATURES[@]}" --no-run
wait "$PYENV_PID" || { echo "test.sh: scripts/pyenv.sh failed (see above)" >&2; exit 1; }
STARLING_PYTHON="$(cat "$VENV_OUT")"
export STARLING_PYTHON PYSPARK_PYTHON="$STARLING_PYTHON" SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test "${FEATURES[@]}" "$@" &
TESTS_PID=$!
# The Python package, installed by pip as a user installs it, but built with the dev profile and
# the same features in the same target directory, so it reuses the dependencies compiled above
# instead of a second, optimised build of everything. It builds while the Rust tests run: cargo
# holds the target directory only while it builds, and the tests found everything built.
sleep 5
PIP_LOG="$(mktemp)"
trap 'rm -f "$VENV_OUT" "$PIP_LOG"; kill "$TESTS_PID" 2>/dev/null || true' EXIT
pip_ok=0
MATURIN_PEP517_ARGS="--profile dev --features hdfs" "$STARLING_PYTHON" -m pip install -q ./python > "$PIP_LOG" 2>&1 || pip_ok=$?
wait "$TESTS_PID"
if [ "$pip_ok" != 0 ]; then
  cat "$PIP_LOG" >&2
  echo "test.sh: pip install ./python failed" >&2
  exit 1
fi
# Its tests use the CLI the Rust tests built.
"$STARLING_PYTHON" -m pytest -q python/tests
