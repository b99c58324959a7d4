#!/usr/bin/env bash
# Memory per model key: peak RSS of `starling train --hash-bits 0` (64-bit keys in the hash
# table) on KEYS distinct keys, minus the peak of the same run on a file of the same shape whose
# keys repeat (KEYS/1000 distinct), divided by KEYS. LR and FM k=8, AdaGrad, one pass, one thread.
#   bash bench/memory.sh            # 10M keys (~2 min after the build)
#   KEYS=1000000 bash bench/memory.sh
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
# shellcheck source=bench/common.sh
source "$BENCH/common.sh"
KEYS=${KEYS:-10000000}
PER_LINE=10
OUT="$BENCH/out/memory"
mkdir -p "$OUT"
starling_binary
bench_venv psutil psutil
lines=$((KEYS / PER_LINE))
gen() { # $1 file, $2 modulus of the ids (0: every id distinct)
  [ -s "$1" ] && return
  "$PY" - "$1" "$lines" "$PER_LINE" "$2" <<'PY'
import sys
path, lines, per, mod = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path + ".tmp", "w") as f:
    i = 0
    for n in range(lines):
        feats = []
        for _ in range(per):
            feats.append(f"{(i % mod) if mod else i}:1")
            i += 1
        f.write(("1 " if n % 3 == 0 else "0 ") + " ".join(feats) + "\n")
import os
os.replace(path + ".tmp", path)
PY
}
gen "$OUT/distinct-$KEYS.libsvm" 0
gen "$OUT/repeated-$KEYS.libsvm" $((KEYS / 1000))
peak() { # $1 file, rest: model flags; prints peak RSS in bytes
  local f=$1; shift
  "$PY" "$BENCH/mon.py" -- "$BIN" train --train "$f" --format libsvm --hash-bits 0 --optimizer adagrad \
    --passes 1 --threads 1 --quiet "$@" | sed -n 's/^MON //p' |
    "$PY" -c 'import json,sys; print(int(json.load(sys.stdin)["peak_rss_mib"] * 1048576))'
}
echo "| model | keys | peak RSS, distinct keys (MiB) | peak RSS, repeated keys (MiB) | bytes per key | target |" | tee "$OUT/memory.md"
echo "|---|---:|---:|---:|---:|---:|" | tee -a "$OUT/memory.md"
for m in "lr:--model lr:32" "fm:--model fm --k 8:96"; do
  IFS=: read -r name flags target <<<"$m"
  # shellcheck disable=SC2086
  a=$(peak "$OUT/distinct-$KEYS.libsvm" $flags)
  # shellcheck disable=SC2086
  b=$(peak "$OUT/repeated-$KEYS.libsvm" $flags)
  "$PY" -c "a,b,k=$a,$b,$KEYS; print(f'| $name | {k:,} | {a/2**20:,.0f} | {b/2**20:,.0f} | {(a-b)/k:.1f} | <= $target |')" | tee -a "$OUT/memory.md"
done
