"""Hook lineage in a DAG opted in with the tag: one INSERT ... SELECT through ``PostgresHook.run``.

The setup task runs DDL only (no input table), so it makes no lineage.
"""

from __future__ import annotations

import pendulum
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import DAG, task

CONN_ID = "deploy_pg"
DDL = (
    "CREATE TABLE IF NOT EXISTS a (id integer); "
    "CREATE TABLE IF NOT EXISTS b (id integer); "
    "CREATE TABLE IF NOT EXISTS c (id integer);"
)

with DAG(
    dag_id="deploy_hook_tagged",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation"],
):

    @task
    def create_tables() -> None:
        PostgresHook(postgres_conn_id=CONN_ID).run(DDL)

    @task
    def copy_a_to_b() -> None:
        PostgresHook(postgres_conn_id=CONN_ID).run("INSERT INTO b SELECT * FROM a")

    create_tables() >> copy_a_to_b()
