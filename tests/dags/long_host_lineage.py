"""A tagged DAG whose table lives on a host with a long first label: a backtracking regular
expression in namespace_map would take minutes on it with Python's re."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset

HOST = "abcdefghijklmnopqrstuvwxyz.prod.internal:6432"

with DAG(
    dag_id="long_host_lineage",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation"],
):
    PythonOperator(
        task_id="copy",
        python_callable=lambda: None,
        inlets=[Asset(f"postgres://{HOST}/sales/public/orders")],
        outlets=[Asset(f"postgres://{HOST}/sales/public/orders_copy")],
    )
