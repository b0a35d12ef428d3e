"""The benchmark command still runs and measures what it claims (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.airflow_home import REPO


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``bench/<script> <args> --json`` from the checkout, as a user runs it."""
    command = [sys.executable, str(REPO / "bench" / script), *args, "--json"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=REPO)


def test_emit_benchmark_runs_and_alation_posts_only_lineage_events() -> None:
    done = run_bench("compare.py", "--only", "emit", "--repeat", "1", "--events", "10")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    (checks,) = result["emit"]["checks"]
    # Every lineage-bearing event reached the receiver, none of the dropped ones, nothing left behind.
    assert checks["alation_posts"] == checks["alation_expected"] > 0
    assert checks["spool_left"] == 0
    assert {"python", "apache-airflow", "openlineage-python"} <= set(result["machine"])


def test_catalogue_benchmark_runs_forked_emitters_against_a_stored_index() -> None:
    """bench/catalogue.py: a refresh reads every data source, and each forked emitter's event is sent
    (the worker fails otherwise); the numbers themselves are the benchmark's business."""
    done = run_bench("catalogue.py", "--sources", "300", "--rules", "200", "--events", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    ((_, runs),) = json.loads(done.stdout)["runs"].items()
    run = runs["300"]
    assert run["refresh"]["count"] == 300 and run["refresh"]["requests"] >= 2
    assert run["refresh"]["file_mib"] > 0
    assert len(run["alation"]) == len(run["baseline"]) == len(run["stock"]) == 3
    assert all(sample["kind"] == "sent" and sample["network"] > 0 for sample in run["alation"])


def test_deployment_benchmark_runs_both_transports_on_a_real_deployment() -> None:
    """bench/deployment.py, one pair without warm-up: the real deployment starts, both transports'
    runs finish, and each delivers exactly what it should (stock: every START and COMPLETE;
    AlationTransport: the 20 lineage-bearing COMPLETEs); the bench's own checks found nothing."""
    done = run_bench("deployment.py", "--repeat", "1", "--warm-ups", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {run["kind"]: run for run in json.loads(done.stdout)["runs"]}
    assert set(runs) == {"http", "alation"}
    assert all(run["state"] == "success" and run["problems"] == [] for run in runs.values()), runs
    assert runs["alation"]["by_type"] == {"COMPLETE TASK": 20} and runs["alation"]["requests"] == 20
    assert runs["http"]["requests"] > runs["alation"]["requests"]
    assert runs["alation"]["connection_reads"]["alation_default"] == len(
        [t for t in runs["alation"]["tasks"].values() if t["worker"]]
    )
