#!/usr/bin/env bash
# Parameter-server TCP throughput against raw TCP between the same two processes: pulls and
# pushes of 1k..1M keys (LR dim 1, FM k=8 dim 9) to 1 and 2 servers, plain and over TLS. Writes the markdown table
# to bench/out/ps_throughput.md and prints it.
#
# Environment (all optional):
#   TIME=0.5          minimum seconds per measurement
#   SKIP_BUILD=1      use the existing binary, do not run cargo
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
OUT="$BENCH/out"
mkdir -p "$OUT"
cd "$ROOT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --example ps_throughput -p starling-ps
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/ps_throughput"
[ -x "$BIN" ] || { echo "error: $BIN not found (build it or unset SKIP_BUILD)" >&2; exit 1; }
# The TLS columns use a throwaway CA and certificate for 127.0.0.1.
CERTS="$(mktemp -d)"
trap 'rm -rf "$CERTS"' EXIT
bash "$ROOT/scripts/dev-certs.sh" "$CERTS"
"$BIN" --time "${TIME:-0.5}" --tls "$CERTS" | tee "$OUT/ps_throughput.md"
