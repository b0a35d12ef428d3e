"""Maintenance: replay the Alation outbox every 15 minutes.

Events Alation could not take when their task finished (Alation down, a rejected token, no
network) wait in the outbox (``spool_dir``); each successful send also drains a few of them. This
DAG sends the rest on a schedule, for deployments where tasks are rare or where workers share the
outbox on a volume (Celery, Kubernetes executors). It is safe to run next to the workers and on
several machines at once: each event is claimed by exactly one sender.

The task fails, visibly in the UI, when a problem that needs a person stopped the replay (a
rejected token, a TLS failure, no route to the tenant); the events stay in the outbox until then.
It sends no lineage of its own (no ``alation`` tag).
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG

from airflow.providers.standard.operators.python import PythonOperator

from airflow_provider_alation.outbox.replay import replay_connection

with DAG(
    dag_id="alation_outbox_replay",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule="*/15 * * * *",
    catchup=False,
    max_active_runs=1,
    tags=["maintenance"],
    doc_md=__doc__,
) as dag:
    PythonOperator(
        task_id="replay_outbox",
        python_callable=replay_connection,
        op_kwargs={"conn_id": "alation_default"},
    )
