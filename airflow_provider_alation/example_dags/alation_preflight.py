"""Preflight: will lineage reach Alation? The checks of ``airflow-alation check``, one task each.

For teams that cannot open a shell on their workers: trigger this DAG and read the Grid view. Each
task runs on a worker, with the worker's configuration, network and connections, logs one line
per check (PASS / WARN / FAIL / INFO, with the fix) and **fails** when any of its checks fails, so
a red square names the problem: the OpenLineage transport not set, the connection missing or
invalid, the token rejected, the tenant unreachable, no DAG opted in, a database connection whose
namespace matches no Alation data source.

The ``connections`` parameter names database connections to check (needed for connections kept in
a secrets backend, which cannot be listed; by default every connection the worker can list is
checked). It sends no lineage of its own (no ``alation`` tag).
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.models.param import Param

try:
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2.10 without the standard provider
    from airflow.operators.python import PythonOperator

from airflow_provider_alation.commands.check import SECTIONS, preflight

with DAG(
    dag_id="alation_preflight",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["maintenance"],
    render_template_as_native_obj=True,
    params={
        "conn_id": Param(
            None, type=["null", "string"], description="Alation connection (default: the transport's)"
        ),
        "connections": Param([], type="array", description="database connection ids to check"),
    },
    doc_md=__doc__,
) as dag:
    for section in SECTIONS:
        PythonOperator(
            task_id=f"check_{section}",
            python_callable=preflight,
            op_kwargs={
                "section": section,
                "conn_id": "{{ params.conn_id }}",
                "connection_ids": "{{ params.connections }}",
            },
        )
