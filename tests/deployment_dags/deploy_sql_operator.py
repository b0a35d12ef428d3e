"""Operator lineage: one ``SQLExecuteQueryOperator`` task, a -> b."""

from __future__ import annotations

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG

with DAG(
    dag_id="deploy_sql_operator",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation"],
):
    SQLExecuteQueryOperator(task_id="copy_a_to_b", conn_id="deploy_pg", sql="INSERT INTO b SELECT * FROM a")
