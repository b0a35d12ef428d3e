"""Quickstart: lineage to Alation with no database.

Three tasks declare the tables they read and write as Airflow assets. The OpenLineage provider turns
them into datasets named after how Airflow reaches the database: an IP and a pgbouncer, which match
no Alation data source. The ``alation`` connection's ``namespace_map`` rewrites both to the host:port
Alation catalogued, e.g.::

    {"namespace_map": {"postgres://10.0.0.5:5432": "postgres://prod-db.example.com:5432",
                       "pgbouncer.internal:6432": "prod-db.example.com:5432"}}

The DAG opts in with the ``alation`` tag. ``notify`` has no datasets: Alation gets nothing for it.

Requires the Postgres provider (``apache-airflow-providers-postgres``), which this package's
``postgres`` extra installs: ``pip install 'airflow-provider-alation[postgres]'`` (from a source
checkout, ``pip install '.[postgres]'``). Its asset converter is what turns the ``postgres://``
assets into OpenLineage datasets; without it the DAG runs, OpenLineage sends no datasets and
Alation gets nothing. ``airflow-alation check`` then warns (``dags / assets of alation_quickstart``).
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, Asset
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.datasets import Dataset as Asset

from airflow.providers.standard.operators.python import PythonOperator


def _work(**_: object) -> None:
    print("pretend to move some rows")


with DAG(
    dag_id="alation_quickstart",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation", "example"],
    doc_md=__doc__,
) as dag:
    clean_orders = PythonOperator(
        task_id="clean_orders",
        python_callable=_work,
        inlets=[Asset("postgres://10.0.0.5:5432/sales/public/orders")],
        outlets=[Asset("postgres://10.0.0.5:5432/sales/staging/orders_clean")],
    )
    daily_revenue = PythonOperator(
        task_id="daily_revenue",
        python_callable=_work,
        inlets=[
            Asset("postgres://10.0.0.5:5432/sales/staging/orders_clean"),
            Asset("postgres://pgbouncer.internal:6432/sales/public/customers"),
        ],
        outlets=[Asset("postgres://pgbouncer.internal:6432/sales/marts/daily_revenue")],
    )
    notify = PythonOperator(task_id="notify", python_callable=_work)

    clean_orders >> daily_revenue >> notify
