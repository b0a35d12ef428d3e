"""A DAG with lineage but no opt-in tag: sent only when dags.include matches its id."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset

with DAG(
    dag_id="untagged_lineage",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example"],
) as dag:
    PythonOperator(
        task_id="copy",
        python_callable=lambda: None,
        inlets=[Asset("postgres://10.0.0.5:5432/sales/public/orders")],
        outlets=[Asset("postgres://10.0.0.5:5432/sales/public/orders_copy")],
    )
