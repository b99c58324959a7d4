#!/usr/bin/env bash
# Starling's Spark estimator vs Spark MLlib LogisticRegression and FMClassifier in local[2] on the
# same DataFrame: fit time, test AUC and logloss. Writes bench/out/spark_estimator.{jsonl,md}.
#   ROWS=100000 TEST_ROWS=ROWS/4 BITS=20 MLLIB_ITER=20   data size, id space, MLlib iterations
#   SKIP_BUILD=1 STARLING=path                          as the other scripts
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
ROWS=${ROWS:-100000}
TEST_ROWS=${TEST_ROWS:-$((ROWS / 4))}
BITS=${BITS:-20}
OUT="$BENCH/out"
mkdir -p "$OUT"
# shellcheck source=common.sh
. "$BENCH/common.sh"
starling_binary
need_flags gen --hash-bits
PY="$(bash "$ROOT/scripts/pyenv.sh")"
CARGO_TARGET_DIR="${STARLING_CACHE:-$HOME/.cache/starling}/python-target" "$PY" -m pip install -q "$ROOT/python"
DATA="$OUT/spark-est-data-$ROWS-$BITS"
[ -s "$DATA/meta.json" ] || "$BIN" gen --out "$DATA" --train-rows "$ROWS" --test-rows "$TEST_ROWS" --formats libsvm --hash-bits "$BITS"
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON="$PY"
"$PY" "$BENCH/spark_estimator.py" --data "$DATA" --bits "$BITS" --out "$OUT/spark_estimator.jsonl" --mllib-iter "${MLLIB_ITER:-20}"
