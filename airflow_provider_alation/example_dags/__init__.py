"""Example DAGs shipped with the provider; copy them into your DAGs folder to use them.

``python -c "import airflow_provider_alation.example_dags as m, os; print(os.path.dirname(m.__file__))"``
prints this folder. Each file is a self-contained DAG module (this ``__init__`` is not one):

- ``alation_quickstart.py``: no database; Postgres assets whose namespaces the ``namespace_map`` rewrites
  (needs the ``postgres`` extra);
- ``alation_preflight.py``: the checks of ``airflow-alation check``, one task per section;
- ``alation_outbox_replay.py``: replays the outbox every 15 minutes;
- ``alation_postgres.py``: ``SQLExecuteQueryOperator`` lineage against a Postgres connection.
"""

from __future__ import annotations

from pathlib import Path

#: The folder holding the example DAG files.
FOLDER = Path(__file__).resolve().parent

#: The example DAG files (this package's ``__init__.py`` excluded).
DAG_FILES: tuple[Path, ...] = tuple(sorted(p for p in FOLDER.glob("alation_*.py")))
