"""Benchmark DAGs (bench/compare.py): real SQL against a real PostgreSQL server.

``bench_twenty_sql``: a Python task and an EmptyOperator (no datasets), a DDL + seed task (an output
table but no input table), then 20 ``INSERT INTO t_out_k SELECT ... FROM t_in_k`` tasks, each with
exactly one input and one output table. The tasks without datasets run first: ``airflow dags test``
runs every task in one process, where the SQL hooks' lineage collected by one task is picked up
again by a later task that has no extractor of its own (a Python or Empty task); ordered this way
no task sees another's lineage, as on a real worker (one process per task).

``bench_task_time``: such INSERT ... SELECT tasks one after the other (``BENCH_TASK_TIME_TASKS``,
default 3, read when the DAG is parsed), each timed on its own: repetitions without paying Airflow's
start-up for each.

The tables ``t_in_k`` / ``t_out_k`` are created by the benchmark before each run; the Postgres
connection is ``bench_postgres`` (``AIRFLOW_CONN_BENCH_POSTGRES``). Neither DAG carries the opt-in
tag: the AlationTransport connection selects them with ``"dags": {"include": ["*"]}``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

CONN_ID = "bench_postgres"
SQL_TASKS = 20


def copy_sql(k: int) -> str:
    return (
        f"INSERT INTO public.t_out_{k} (id, name, amount) "
        f"SELECT id, name, amount FROM public.t_in_{k} WHERE amount > 10"
    )


with DAG(
    dag_id="bench_twenty_sql",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
) as twenty:
    check = PythonOperator(task_id="check", python_callable=lambda: None)
    start = EmptyOperator(task_id="start")
    ddl = SQLExecuteQueryOperator(
        task_id="ddl_and_seed",
        conn_id=CONN_ID,
        sql="""
            CREATE TABLE IF NOT EXISTS public.bench_runs (run_id text NOT NULL, ran_at timestamptz NOT NULL);
            INSERT INTO public.bench_runs (run_id, ran_at) VALUES ('{{ run_id }}', now());
        """,
    )
    check >> start >> ddl
    for k in range(SQL_TASKS):
        ddl >> SQLExecuteQueryOperator(task_id=f"copy_{k:02d}", conn_id=CONN_ID, sql=copy_sql(k))

with DAG(
    dag_id="bench_task_time",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
) as task_time:
    previous = None
    for k in range(int(os.environ.get("BENCH_TASK_TIME_TASKS", "3"))):
        task = SQLExecuteQueryOperator(task_id=f"copy_{k:02d}", conn_id=CONN_ID, sql=copy_sql(k % SQL_TASKS))
        if previous is not None:
            previous >> task
        previous = task
