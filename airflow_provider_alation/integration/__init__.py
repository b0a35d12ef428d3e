"""Airflow integration: the connection, the OpenLineage configuration, the task context, metrics."""
