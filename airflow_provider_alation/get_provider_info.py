"""Provider metadata read by Airflow's ProvidersManager (``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from airflow_provider_alation import __version__
    from airflow_provider_alation.integration.connection import UI_FIELD_BEHAVIOUR, conn_fields

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
                # Airflow 3.2+ renders these typed, labelled fields (stored in extra); older Airflow
                # ignores them and keeps the Settings (JSON) box of get_ui_field_behaviour.
                "conn-fields": conn_fields(),
            }
        ],
        "plugins": [
            {"name": "alation", "plugin-class": "airflow_provider_alation.plugins.alation.AlationPlugin"}
        ],
        # Airflow 3.2+: ``airflow alation check|resolve|datasources|replay|version``.
        "cli": ["airflow_provider_alation.commands.cli.get_airflow_commands"],
    }
