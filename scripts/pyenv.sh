#!/usr/bin/env bash
# Creates (or updates) the Python venv the tests use and prints its python's path.
# The venv lives outside the checkout, in ${STARLING_CACHE:-~/.cache/starling}/venv, and is
# reinstalled only when scripts/requirements-test.txt changes. Spark needs Java 17+ on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${STARLING_CACHE:-$HOME/.cache/starling}"
VENV="$CACHE/venv"
REQ=scripts/requirements-test.txt
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.starling-requirements" 2>/dev/null)" != "$want" ]; then
  command -v python3 >/dev/null || { echo "pyenv: python3 is not installed" >&2; exit 1; }
  echo "pyenv: installing $REQ into $VENV (first run: a few minutes)" >&2
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r "$REQ" >&2
  echo "$want" > "$VENV/.starling-requirements"
fi
command -v java >/dev/null || echo "pyenv: warning: no java on PATH; the Spark tests need Java 17+" >&2
echo "$VENV/bin/python"
