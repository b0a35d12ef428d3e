"""Apache Airflow provider that sends OpenLineage lineage to Alation."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "enable_alation_lineage"]


def __getattr__(name: str):  # lazy: importing the package must stay cheap (it is on the emit path)
    if name == "enable_alation_lineage":
        from airflow_provider_alation.integration.opt_in import enable_alation_lineage

        return enable_alation_lineage
    raise AttributeError(name)
