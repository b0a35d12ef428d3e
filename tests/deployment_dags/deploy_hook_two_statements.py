"""Two statements in one task, two ``PostgresHook.run`` calls: a -> b, then b -> c."""

from __future__ import annotations

import pendulum
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import DAG, task

CONN_ID = "deploy_pg"

with DAG(
    dag_id="deploy_hook_two_statements",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation"],
):

    @task
    def copy_a_to_b_to_c() -> None:
        hook = PostgresHook(postgres_conn_id=CONN_ID)
        hook.run("INSERT INTO b SELECT * FROM a")
        hook.run("INSERT INTO c SELECT * FROM b")

    copy_a_to_b_to_c()
