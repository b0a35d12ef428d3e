"""SQL run through a hook in a ``@task``: the OpenLineage provider emits one per-query job for each
statement (``hook_lineage.load.query.<n>``), children of the task, carrying no DAG tags."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

CONN_ID = "hook_lineage_pg"


@task
def create_tables() -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=CONN_ID)
    for table in ("a", "b", "c"):
        hook.run(f"CREATE TABLE IF NOT EXISTS public.{table} (id int)")
    hook.run("INSERT INTO public.a VALUES (1), (2)")


@task
def load() -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=CONN_ID)
    hook.run("INSERT INTO public.b SELECT * FROM public.a")
    hook.run("INSERT INTO public.c SELECT * FROM public.b")


with DAG(
    dag_id="hook_lineage",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["alation"],
):
    create_tables() >> load()
