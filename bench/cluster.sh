#!/usr/bin/env bash
# Cluster benchmark: `starling launch --servers 2 --workers 2` (real processes over loopback TCP)
# against the single-process `starling train`, and both against Spark MLlib LogisticRegression in
# local[2] on the same LibSVM file (time until the same test logloss). Appends JSON lines to
# bench/out/cluster.jsonl, writes the tables to bench/out/cluster.md. See bench/README.md.
#
# Environment (all optional):
#   ROWS=500000 TEST_ROWS=ROWS/5 SEED=42    data size and seed (ROWS=50000 for a quick smoke run)
#   HASH_BITS=20                            id space of the LibSVM file (Spark numFeatures = 2^HASH_BITS)
#                                           and Starling's --hash-bits
#   ROUNDS=3                                rounds of the Starling runs (Spark runs once)
#   PASSES=3                                Starling runs 1..PASSES passes
#   OPTIMIZER=ftrl THREADS=1                Starling LR optimizer and threads of `starling train`
#   STARLING_ARGS="..."                     extra flags for every Starling run
#   SPARK_LADDER=5,10,20,40,80              Spark maxIter values (one session, one fit each)
#   SPARK_REG=1e-4 SPARK_MEM=6g             Spark regParam and driver memory
#   TOL=0.001                               tolerance added to the target logloss
#   QUIET_WAIT=10                           max seconds to wait for an idle machine before a run
#   NO_SPARK=1                              Starling runs only
#   SUMMARY_OF=RUN_ID                       run nothing: rewrite cluster.md from that run's records in
#                                           cluster.jsonl (cluster.md holds only the latest run)
#   SKIP_BUILD=1                            use the existing binary, do not run cargo
#   STARLING=/path/to/starling              binary to use (default $CARGO_TARGET_DIR/release/starling)
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
ROWS=${ROWS:-500000}
TEST_ROWS=${TEST_ROWS:-$((ROWS / 5))}
SEED=${SEED:-42}
HASH_BITS=${HASH_BITS:-20}
ROUNDS=${ROUNDS:-3}
PASSES=${PASSES:-3}
QUIET_WAIT=${QUIET_WAIT:-10}
OUT="$BENCH/out"
DATA="$OUT/cluster-data"
mkdir -p "$OUT"
# shellcheck source=common.sh
. "$BENCH/common.sh"

# 1. Starling release binary -------------------------------------------------------------------
starling_binary
for sub in train launch; do
  need_flags "$sub" --train --test --format --model --optimizer --hash-bits --passes --threads --quiet --report
done
need_flags launch --servers --workers
need_flags gen --hash-bits

# 2. Python venv with pyspark -------------------------------------------------------------------
bench_venv "numpy, sklearn, psutil" numpy scikit-learn psutil
if [ "${NO_SPARK:-0}" != 1 ]; then
  command -v java >/dev/null 2>&1 || die "Spark needs Java 17+ on PATH (apt-get install openjdk-17-jre-headless), or NO_SPARK=1"
  if ! "$PY" -c 'import pyspark, pandas; assert int(pandas.__version__.split(".")[0]) < 3' 2>/dev/null; then
    say "installing pyspark and pandas<3 into $VENV"
    "$VENV/bin/pip" install -q pyspark 'pandas<3'
  fi
  export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
fi

# 3. Data ---------------------------------------------------------------------------------------
have_data() {
  [ -s "$DATA/meta.json" ] && [ -s "$DATA/train.libsvm" ] && [ -s "$DATA/test.libsvm" ] &&
    "$PY" - "$DATA/meta.json" "$ROWS" "$TEST_ROWS" "$SEED" "$HASH_BITS" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
ok = (m.get("n_train"), m.get("n_test"), m.get("seed"), m.get("hash_bits")) == tuple(int(x) for x in sys.argv[2:6])
sys.exit(0 if ok else 1)
EOF
}
if have_data; then
  say "reusing $DATA ($ROWS train / $TEST_ROWS test rows, seed $SEED, ids < 2^$HASH_BITS)"
else
  say "generating $ROWS train / $TEST_ROWS test rows (libsvm, ids < 2^$HASH_BITS) into $DATA"
  rm -rf "$DATA"
  "$BIN" gen --out "$DATA" --train-rows "$ROWS" --test-rows "$TEST_ROWS" --formats libsvm --hash-bits "$HASH_BITS" --seed "$SEED"
fi

# 4. Runs ---------------------------------------------------------------------------------------
say "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
args=(run --bin "$BIN" --data "$DATA" --out "$OUT" --rows "$ROWS" --test-rows "$TEST_ROWS" --hash-bits "$HASH_BITS"
      --rounds "$ROUNDS" --max-passes "$PASSES" --optimizer "${OPTIMIZER:-ftrl}" --threads "${THREADS:-1}"
      --starling-args "${STARLING_ARGS:-}" --quiet-wait "$QUIET_WAIT" --tol "${TOL:-0.001}"
      --spark-ladder "${SPARK_LADDER:-5,10,20,40,80}" --spark-reg "${SPARK_REG:-1e-4}" --spark-mem "${SPARK_MEM:-6g}")
[ "${NO_SPARK:-0}" = 1 ] && args+=(--no-spark)
[ -n "${SUMMARY_OF:-}" ] && args+=(--summary-of "$SUMMARY_OF")
cd "$BENCH"
exec "$PY" "$BENCH/cluster_suite.py" "${args[@]}"
