"""No opt-in tag: sent only because the connection's extra has dags.include naming it."""

from __future__ import annotations

import pendulum
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import DAG, task

CONN_ID = "deploy_pg"

with DAG(
    dag_id="deploy_hook_included",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=[],
):

    @task
    def copy_a_to_b() -> None:
        PostgresHook(postgres_conn_id=CONN_ID).run("INSERT INTO b SELECT * FROM a")

    copy_a_to_b()
