#!/usr/bin/env bash
# The demo: sets up .venv, runs the quickstart DAG in a throwaway Airflow home against a local
# stand-in for Alation and shows the events before and after the transport.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh ""
exec .venv/bin/python demo/quickstart.py
