#!/usr/bin/env bash
# Creates .venv (if missing) and installs the package with the given extras. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip uv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m uv pip install --quiet --python .venv/bin/python -e "$spec"
