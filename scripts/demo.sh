#!/usr/bin/env bash
# The demo: sets up .venv, runs the quickstart DAG in a throwaway Airflow home against a local
# stand-in for Alation and shows the events before and after the transport.
set -euo pipefail
cd "$(dirname "$0")/.."
# The postgres extra brings the Postgres provider, whose Asset converter turns the quickstart DAG's
# postgres:// assets into OpenLineage datasets (no database server is needed).
bash scripts/bootstrap.sh postgres
exec .venv/bin/python demo/quickstart.py
