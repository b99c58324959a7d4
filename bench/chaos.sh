#!/usr/bin/env bash
# The chaos harness at length: a 2 servers × 2 workers job with checkpoints (LR, 40k generated
# rows, BSP and ASP trials alternating), and in every trial one process (server, worker or
# coordinator, at random) killed with SIGKILL at a random moment. Every trial must end with the
# fault-free model (BSP: identical rows; ASP: test logloss within 0.002), no process left behind,
# and each recovery back to training within the heartbeat timeout plus a restart. It is the
# suite's crates/starling/tests/chaos.rs with more trials, built in release. Writes the figures
# and a line per trial to bench/out/chaos.md and prints the summary.
#
# Environment (all optional):
#   TRIALS=100   trials
#   SEED=1       which trials (the role and moment of each kill)
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
OUT="$BENCH/out"
mkdir -p "$OUT"
cd "$ROOT"
# The whole output (every process's log of a failed trial included) goes to bench/out/chaos.log.
rc=0
CHAOS_TRIALS="${TRIALS:-100}" CHAOS_SEED="${SEED:-1}" CHAOS_OUT="$OUT/chaos.md" \
  cargo test --release -p starling --test chaos -- --nocapture > "$OUT/chaos.log" 2>&1 || rc=$?
grep -v '^\[' "$OUT/chaos.log" | tail -5
if [ "$rc" -ne 0 ]; then
  echo "chaos: FAILED (the full log, every process's included: $OUT/chaos.log)"
  exit "$rc"
fi
cat "$OUT/chaos.md" | head -3
