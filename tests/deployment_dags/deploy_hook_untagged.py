"""No opt-in tag and not included: never sent."""

from __future__ import annotations

import pendulum
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import DAG, task

CONN_ID = "deploy_pg"

with DAG(
    dag_id="deploy_hook_untagged",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=[],
):

    @task
    def copy_a_to_b() -> None:
        PostgresHook(postgres_conn_id=CONN_ID).run("INSERT INTO b SELECT * FROM a")

    copy_a_to_b()
