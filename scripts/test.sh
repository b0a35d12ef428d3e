#!/usr/bin/env bash
# The tests: installs what they need on a fresh machine (PostgreSQL server binaries from Debian,
# .venv with the package and its test extra), lints, then runs pytest. Extra args go to pytest.
# Works in a clone with nothing beside it (see below).
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
# The browser test drives Airflow's UI in Debian's chromium through Playwright (test extra); it
# never downloads a browser. Without chromium it is skipped, or fails when CI is set.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium missing, the browser test will skip: sudo apt-get install chromium" >&2
  fi
fi
# Without ../shared (a clone with nothing beside it) the tests still run: events are validated against
# openlineage-python's models instead of the JSON Schemas, which pytest says once, and the tests on
# the real-events corpus are skipped. CI sets ALATION_REQUIRE_SHARED=1: then a missing ../shared fails.
if [ "${ALATION_REQUIRE_SHARED:-}" = 1 ] && [ ! -f ../shared/openlineage-spec/OpenLineage.json ]; then
  echo "ALATION_REQUIRE_SHARED=1 but ../shared/openlineage-spec (the OpenLineage JSON Schemas) is missing:" \
       "check out the shared folder beside this repository." >&2
  exit 1
fi
bash scripts/bootstrap.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
