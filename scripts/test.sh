#!/usr/bin/env bash
# The tests: installs what they need on a fresh machine (PostgreSQL server binaries from Debian,
# .venv with the package and its test extra), lints, then runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries missing: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi
if [ ! -d ../shared/openlineage-spec ]; then
  echo "The tests validate events against ../shared/openlineage-spec (the OpenLineage JSON Schemas):" \
       "check out the shared folder beside this repository, as CI does." >&2
  exit 1
fi
bash scripts/bootstrap.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
