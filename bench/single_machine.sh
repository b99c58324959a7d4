#!/usr/bin/env bash
# Single-machine benchmark: Starling vs Vowpal Wabbit (and xLearn when it installs) on the same
# synthetic Criteo-like data, one pass, side by side for a few rounds; prints medians and ratios
# and appends JSON lines to bench/out/results.jsonl. See bench/README.md.
#
# Environment (all optional):
#   ROWS=1000000 TEST_ROWS=ROWS/5 SEED=42   data size and seed (ROWS=100000 for a quick smoke run)
#   ROUNDS=3                                rounds; each round runs every config once
#   CONFIGS=a,b,...                         subset of configs (default: all; see run_suite.py)
#   CPU=0                                   core for the pinned (taskset) runs
#   QUIET_WAIT=20                           max seconds to wait for an idle machine before a run
#   SKIP_BUILD=1                            use the existing binary, do not run cargo
#   STARLING=/path/to/starling              binary to use (default $CARGO_TARGET_DIR/release/starling)
#   PEERS_ONLY=1                            run only the peers (needs data already in bench/out/data)
#   NO_XLEARN=1                             do not try to install or run xLearn
#   STARLING_LR_ARGS / STARLING_FM_ARGS / VW_ARGS / XL_ARGS   extra flags for those runs
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
ROWS=${ROWS:-1000000}
TEST_ROWS=${TEST_ROWS:-$((ROWS / 5))}
SEED=${SEED:-42}
ROUNDS=${ROUNDS:-3}
CPU=${CPU:-0}
QUIET_WAIT=${QUIET_WAIT:-20}
OUT="$BENCH/out"
DATA="$OUT/data"
mkdir -p "$OUT"
# shellcheck source=common.sh
. "$BENCH/common.sh"

# 1. Starling release binary -------------------------------------------------------------------
BIN=${STARLING:-${CARGO_TARGET_DIR:-$ROOT/target}/release/starling}
STARLING_OK=1
if [ "${PEERS_ONLY:-0}" = 1 ]; then
  STARLING_OK=0
elif [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${STARLING:-}" ]; then
  say "building: cargo build --release -p starling"
  (cd "$ROOT" && cargo build --release -p starling) || die "cargo build --release -p starling failed (PEERS_ONLY=1 runs only the peers)"
fi
if [ "$STARLING_OK" = 1 ]; then
  [ -x "$BIN" ] || die "no Starling binary at $BIN (build it, set STARLING=..., or PEERS_ONLY=1 for the peers only)"
  help=$("$BIN" train --help 2>&1) || die "$BIN train --help failed: $help"
  for flag in --train --test --format --model --k --optimizer --hash-bits --passes --threads --quiet --report; do
    grep -q -- "$flag\b" <<<"$help" || die "$BIN train does not support $flag yet (PEERS_ONLY=1 runs only the peers)"
  done
  "$BIN" gen --help >/dev/null 2>&1 || die "$BIN has no 'gen' subcommand yet"
fi

# 2. Python venv with the peers -----------------------------------------------------------------
bench_venv "vowpalwabbit, numpy, sklearn, psutil" vowpalwabbit numpy scikit-learn psutil
XLEARN=0
if [ "${NO_XLEARN:-0}" != 1 ]; then
  if "$PY" -c 'import xlearn' >/dev/null 2>&1; then
    XLEARN=1
  elif [ ! -e "$OUT/.xlearn-failed" ] || [ "${RETRY_XLEARN:-0}" = 1 ]; then
    # xLearn is a 2018 sdist: it needs cmake (taken from PyPI) and CMake-4 compatibility mode
    say "trying to install xlearn (builds C++ from source; a few minutes)"
    if "$VENV/bin/pip" install -q cmake >"$OUT/xlearn-install.log" 2>&1 &&
       CMAKE_BIN=$("$PY" -c 'import cmake, os; print(os.path.join(os.path.dirname(cmake.__file__), "data", "bin"))') &&
       PATH="$CMAKE_BIN:$PATH" CMAKE_POLICY_VERSION_MINIMUM=3.5 "$VENV/bin/pip" install xlearn >>"$OUT/xlearn-install.log" 2>&1 &&
       "$PY" -c 'import xlearn' >/dev/null 2>&1; then
      XLEARN=1; rm -f "$OUT/.xlearn-failed"
    else
      touch "$OUT/.xlearn-failed"
    fi
  fi
  [ "$XLEARN" = 1 ] || echo "note: xLearn could not be installed (see $OUT/xlearn-install.log; RETRY_XLEARN=1 retries): skipping xLearn"
fi

# 3. Data ---------------------------------------------------------------------------------------
have_data() {
  [ -s "$DATA/meta.json" ] && [ -s "$DATA/train.vw" ] && [ -s "$DATA/test.vw" ] &&
    [ -s "$DATA/train.libsvm" ] && [ -s "$DATA/test.libsvm" ] &&
    "$PY" - "$DATA/meta.json" "$ROWS" "$TEST_ROWS" "$SEED" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
ok = (m.get("n_train"), m.get("n_test"), m.get("seed"), m.get("hash_bits")) == (int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 24)
sys.exit(0 if ok else 1)
EOF
}
if have_data; then
  say "reusing $DATA ($ROWS train / $TEST_ROWS test rows, seed $SEED)"
else
  [ "$STARLING_OK" = 1 ] || die "no data for ROWS=$ROWS TEST_ROWS=$TEST_ROWS SEED=$SEED in $DATA and no Starling binary to generate it"
  say "generating $ROWS train / $TEST_ROWS test rows (vw, libsvm) into $DATA"
  rm -rf "$DATA"
  t0=$(date +%s.%N)
  "$BIN" gen --out "$DATA" --train-rows "$ROWS" --test-rows "$TEST_ROWS" --formats vw,libsvm --seed "$SEED"
  t1=$(date +%s.%N)
  "$PY" - "$t0" "$t1" "$ROWS" "$TEST_ROWS" "$OUT/results.jsonl" "$DATA" <<'EOF'
import json, os, sys, time
t0, t1, n, m, out, data = sys.argv[1:]
s = float(t1) - float(t0)
size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))
rec = dict(type="gen", rows=int(n) + int(m), formats="vw,libsvm", seconds=round(s, 2),
           rows_per_s=round((int(n) + int(m)) / s), mb_per_s=round(size / 1e6 / s, 1), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
open(out, "a").write(json.dumps(rec) + "\n")
print(f"generated {rec['rows']:,} rows, {size / 1e6:.0f} MB, in {s:.1f} s ({rec['rows_per_s']:,} rows/s)")
EOF
fi

# 4. Runs ---------------------------------------------------------------------------------------
say "running $ROUNDS round(s)"
args=(--data "$DATA" --out "$OUT" --rounds "$ROUNDS" --rows "$ROWS" --test-rows "$TEST_ROWS" --cpu "$CPU"
      --quiet-wait "$QUIET_WAIT" --lr-args "${STARLING_LR_ARGS:-}" --fm-args "${STARLING_FM_ARGS:-}"
      --vw-args "${VW_ARGS:-}" --xl-args "${XL_ARGS:-}")
[ -n "${CONFIGS:-}" ] && args+=(--configs "$CONFIGS")
[ "$XLEARN" = 1 ] || args+=(--no-xlearn)
[ "$STARLING_OK" = 1 ] && args+=(--bin "$BIN")
cd "$BENCH"
exec "$PY" "$BENCH/run_suite.py" "${args[@]}"
