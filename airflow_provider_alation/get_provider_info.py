"""Provider metadata read by Airflow's ProvidersManager (``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from airflow_provider_alation import __version__
    from airflow_provider_alation.connection import UI_FIELD_BEHAVIOUR

    return {
        "package-name": "airflow-provider-alation",
        "name": "Alation",
        "description": "Sends OpenLineage lineage from Airflow to Alation's data catalog.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Alation",
                "external-doc-url": "https://www.alation.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Alation", "python-modules": ["airflow_provider_alation.hooks.alation"]}
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_alation.hooks.alation.AlationHook",
                "hook-name": "Alation",
                "connection-type": "alation",
                # Provider info spells these keys in kebab-case ("hidden-fields").
                "ui-field-behaviour": {k.replace("_", "-"): v for k, v in UI_FIELD_BEHAVIOUR.items()},
            }
        ],
        "plugins": [
            {"name": "alation", "plugin-class": "airflow_provider_alation.plugins.alation.AlationPlugin"}
        ],
    }
