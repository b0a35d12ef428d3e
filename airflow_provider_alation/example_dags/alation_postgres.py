"""Postgres example: SQL lineage from ``SQLExecuteQueryOperator`` to Alation.

Needs a Postgres connection ``postgres_alation_example`` (override with the
``ALATION_EXAMPLE_POSTGRES_CONN_ID`` environment variable). The OpenLineage provider parses each
statement: ``INSERT ... SELECT`` reads one table and writes another, so Alation gets one COMPLETE
event for ``build_orders_daily``; the DDL and the seed ``INSERT ... VALUES`` have no input table, so
Alation gets nothing for them.
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from airflow_provider_alation import enable_alation_lineage

CONN_ID = os.environ.get("ALATION_EXAMPLE_POSTGRES_CONN_ID", "postgres_alation_example")

with DAG(
    dag_id="alation_postgres",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example"],
    doc_md=__doc__,
) as dag:
    create_tables = SQLExecuteQueryOperator(
        task_id="create_tables",
        conn_id=CONN_ID,
        sql="""
            CREATE TABLE IF NOT EXISTS public.orders (
                id integer PRIMARY KEY, customer text NOT NULL,
                amount numeric NOT NULL, ordered_on date NOT NULL
            );
            CREATE TABLE IF NOT EXISTS public.orders_daily (
                ordered_on date PRIMARY KEY, orders integer NOT NULL, revenue numeric NOT NULL
            );
        """,
    )
    seed_orders = SQLExecuteQueryOperator(
        task_id="seed_orders",
        conn_id=CONN_ID,
        sql="""
            INSERT INTO public.orders (id, customer, amount, ordered_on) VALUES
                (1, 'acme', 10.50, '2024-01-01'), (2, 'globex', 20.00, '2024-01-01'),
                (3, 'acme', 7.25, '2024-01-02')
            ON CONFLICT (id) DO NOTHING;
        """,
    )
    build_orders_daily = SQLExecuteQueryOperator(
        task_id="build_orders_daily",
        conn_id=CONN_ID,
        sql="""
            INSERT INTO public.orders_daily (ordered_on, orders, revenue)
            SELECT ordered_on, count(*), sum(amount) FROM public.orders GROUP BY ordered_on
            ON CONFLICT (ordered_on) DO UPDATE SET orders = EXCLUDED.orders, revenue = EXCLUDED.revenue;
        """,
    )
    create_tables >> seed_orders >> build_orders_daily

# Opt in with the helper (the same as adding the "alation" tag).
enable_alation_lineage(dag)
