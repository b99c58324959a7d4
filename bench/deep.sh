#!/usr/bin/env bash
# Deep models: Starling against a plain PyTorch implementation of the same models on CPU
# (bench/movielens/torch_reference.py), same data, hyperparameters and protocol, 2 threads each:
# test AUC and training examples/s, on MovieLens-100K (BARS protocol: early stopping on the
# validation AUC, patience 2, learning rates ÷10 on a plateau) and on generated rows with the
# hidden non-linear term (one pass). Also the dense layers' GFLOP/s against the GEMM crate's.
# Appends JSON lines to bench/out/deep.jsonl and prints a table. See bench/README.md.
#
# Environment (all optional):
#   ROWS=1000000            generated training rows (ROWS=100000 for a quick run)
#   MODELS="fm deepfm dcn wide_deep dlrm"
#   THREADS=2
#   SKIP_BUILD=1 STARLING=/path/to/starling
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
ROWS=${ROWS:-1000000}
MODELS=${MODELS:-"fm deepfm dcn wide_deep dlrm"}
THREADS=${THREADS:-2}
OUT="$BENCH/out/deep"
source "$BENCH/common.sh"
starling_binary
bench_venv "torch, sklearn, numpy" numpy scikit-learn torch
mkdir -p "$OUT"
RUN_ID=$(date +%Y%m%dT%H%M%S)

say "data"
[ -f "$OUT/ml/test.vw" ] || "$PY" "$BENCH/movielens/prepare.py" "$OUT/ml"
if [ ! -f "$OUT/gen/meta.json" ] || ! grep -q "\"train_rows\": $ROWS\b" "$OUT/gen/meta.json"; then
  "$BIN" gen --out "$OUT/gen" --train-rows "$ROWS" --test-rows $((ROWS / 5)) --formats vw --nonlinear 1
fi

# Extra options per model, the same for both implementations.
opts() { case $1 in dcn) echo "--dropout 0.2" ;; *) echo "" ;; esac; }

# run DATA MODEL NAMESPACES EPOCHS PATIENCE: one Starling and one PyTorch run, one JSON line each.
run() {
  local data=$1 model=$2 ns=$3 epochs=$4 patience=$5 valid=$1/valid.vw
  [ -f "$valid" ] || valid=$1/test.vw
  cat > "$OUT/job.toml" <<TOML
[features]
format = "vw"
namespaces = "$ns"
hash_bits = 22
[model]
v2 = true
[train]
passes = $epochs
threads = $THREADS
TOML
  if [ "$patience" -gt 0 ]; then
    printf 'patience = %s\nlr_decay_on_plateau = 10\n' "$patience" >> "$OUT/job.toml"
  fi
  local valid_flag=(--valid "$valid")
  [ "$patience" -gt 0 ] || valid_flag=()
  "$BIN" train --config "$OUT/job.toml" --model "$model" $(opts "$model") --train "$data/train.vw" \
    "${valid_flag[@]}" --test "$data/test.vw" --quiet --report "$OUT/report.json" > /dev/null
  "$PY" - "$OUT/report.json" "$RUN_ID" "$(basename "$data")" "$model" >> "$BENCH/out/deep.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"run": sys.argv[2], "data": sys.argv[3], "model": sys.argv[4], "impl": "starling",
                  "test_auc": r["test"]["auc"], "examples_per_s": r["train_examples"] / r["train_seconds"]}))
PY
  "$PY" "$BENCH/movielens/torch_reference.py" --model "$model" $(opts "$model") --namespaces "$ns" \
    --train "$data/train.vw" --valid "$valid" --test "$data/test.vw" --epochs "$epochs" \
    --patience $((patience > 0 ? patience : 1)) --threads "$THREADS" 2>/dev/null |
    sed -n 's/^RESULT //p' | "$PY" -c '
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({"run": sys.argv[1], "data": sys.argv[2], "model": sys.argv[3], "impl": "pytorch",
                  "test_auc": r["test_auc"], "examples_per_s": r["train_examples_per_s"]}))' \
    "$RUN_ID" "$(basename "$data")" "$model" >> "$BENCH/out/deep.jsonl"
}

for m in $MODELS; do
  say "movielens: $m"
  run "$OUT/ml" "$m" uiagozyc 10 2
done
for m in deepfm dcn; do
  say "generated ($ROWS rows): $m"
  run "$OUT/gen" "$m" iab 1 0
done
say "dense layers"
(cd "$ROOT" && cargo run -q --release -p starling-core --example mlp_flops) | tee "$OUT/flops.txt"

say "results (run $RUN_ID)"
"$PY" - "$BENCH/out/deep.jsonl" "$RUN_ID" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("run") == sys.argv[2]]
print("| data | model | Starling AUC | PyTorch AUC | AUC diff | Starling ex/s | PyTorch ex/s | speed ratio |")
print("|---|---|---|---|---|---|---|---|")
keys = sorted({(r["data"], r["model"]) for r in rows}, key=lambda k: (k[0] != "ml", k[1]))
for d, m in keys:
    s = next(r for r in rows if (r["data"], r["model"], r["impl"]) == (d, m, "starling"))
    p = next(r for r in rows if (r["data"], r["model"], r["impl"]) == (d, m, "pytorch"))
    print(f"| {d} | {m} | {s['test_auc']:.4f} | {p['test_auc']:.4f} | {s['test_auc'] - p['test_auc']:+.4f} "
          f"| {s['examples_per_s']:.0f} | {p['examples_per_s']:.0f} | {s['examples_per_s'] / p['examples_per_s']:.2f}× |")
PY
