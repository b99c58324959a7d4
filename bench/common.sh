# Sourced by the bench scripts (after they set BENCH and ROOT): messages, the Starling binary they
# run, and the bench venv (bench/.venv) the monitors and peers run in.

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

VENV="$BENCH/.venv"
PY="$VENV/bin/python"

# Sets BIN: $STARLING, else the release binary, built first unless SKIP_BUILD=1.
starling_binary() {
  BIN=${STARLING:-${CARGO_TARGET_DIR:-$ROOT/target}/release/starling}
  if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${STARLING:-}" ]; then
    say "building: cargo build --release -p starling"
    (cd "$ROOT" && cargo build --release -p starling) || die "cargo build --release -p starling failed"
  fi
  [ -x "$BIN" ] || die "no Starling binary at $BIN (build it or set STARLING=...)"
}

# need_flags SUBCOMMAND FLAG...: dies unless `$BIN SUBCOMMAND --help` lists every FLAG.
need_flags() {
  local sub=$1 help flag
  shift
  help=$("$BIN" "$sub" --help 2>&1) || die "$BIN has no '$sub' subcommand: $help"
  for flag in "$@"; do
    grep -q -- "$flag\b" <<<"$help" || die "$BIN $sub does not support $flag"
  done
}

# bench_venv "IMPORTS" PACKAGE...: makes bench/.venv and installs PACKAGEs unless IMPORTS import.
bench_venv() {
  local imports=$1
  shift
  if ! { [ -x "$PY" ] && "$PY" -c "import $imports" 2>/dev/null; }; then
    say "creating $VENV ($*)"
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "$@"
  fi
}
