#!/usr/bin/env bash
# Hyperparameter search benchmark: 16 trials of `starling tune` with ASHA early stopping against the
# same 16 trials run to completion one after another (and side by side, without ASHA). Wall time,
# examples trained, and whether the same (or an equally good) winner is found. Appends JSON lines
# to bench/out/tune.jsonl, writes the tables to bench/out/tune.md. See bench/README.md.
#
# Environment (all optional):
#   ROWS=200000 TEST_ROWS=ROWS/4 SEED=42    data size and seed (ROWS=20000 for a quick smoke run)
#   TRIALS=16 PASSES=3                      trials of the search and passes of each trial
#   ASHA="3:0.1111,2:0.25"                 ASHA settings eta:grace, each a search (default 3:1/9 and 2:0.25)
#   MODEL=fm K=4                            model of every trial
#   ROUNDS=1                                rounds of the three searches (interleaved)
#   TOL=0.001                               "equally good": winner's logloss within TOL of the other's
#   QUIET_WAIT=10                           max seconds to wait for an idle machine before a run
#   SKIP_BUILD=1                            use the existing binary, do not run cargo
#   STARLING=/path/to/starling              binary to use (default $CARGO_TARGET_DIR/release/starling)
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
ROWS=${ROWS:-200000}
TEST_ROWS=${TEST_ROWS:-$((ROWS / 4))}
SEED=${SEED:-42}
OUT="$BENCH/out"
DATA="$OUT/tune-data"
mkdir -p "$OUT"
# shellcheck source=common.sh
. "$BENCH/common.sh"

# 1. Starling release binary -------------------------------------------------------------------
starling_binary
need_flags tune --space --out --parallel --trials --cache-dir --train --test --hash-bits

# 2. Python venv (psutil for mon.py) -----------------------------------------------------------
bench_venv psutil psutil

# 3. Data ---------------------------------------------------------------------------------------
if ! { [ -s "$DATA/meta.json" ] && "$PY" - "$DATA/meta.json" "$ROWS" "$TEST_ROWS" "$SEED" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
want = [int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])]
got = [m.get("n_train"), m.get("n_test"), m.get("seed")]
sys.exit(0 if got == want else 1)
EOF
}; then
  say "generating $ROWS train / $TEST_ROWS test rows into $DATA"
  rm -rf "$DATA"
  "$BIN" gen --out "$DATA" --train-rows "$ROWS" --test-rows "$TEST_ROWS" --seed "$SEED" --formats libsvm
fi

# 4. The searches -------------------------------------------------------------------------------
say "running the searches"
exec "$PY" "$BENCH/tune_suite.py" --bin "$BIN" --data "$DATA" --out "$OUT"
