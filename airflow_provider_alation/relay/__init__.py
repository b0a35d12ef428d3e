"""The relay: an OpenLineage HTTP endpoint (``POST /api/v1/lineage``) for senders outside Airflow
(Spark, Flink, dbt-ol, Dagster, any ``http`` transport), feeding the same gate, resolution, shaping
and outbox as :class:`~airflow_provider_alation.transport.AlationTransport`.

- ``config.py``: the relay's settings (senders, their tokens, their Alation settings, the limits);
- ``app.py``: the FastAPI app (request checks, write-ahead, the answer);
- ``worker.py``: background delivery (a small thread pool) and the periodic outbox replay;
- ``mount.py``: the app Airflow's api-server mounts under ``/alation-relay`` (imports nothing until
  a request arrives);
- ``server.py``: the standalone runner (uvicorn, several workers);
- ``protocol.py``: its HTTP protocol, uvicorn's with a deadline for each request's headers.
"""
