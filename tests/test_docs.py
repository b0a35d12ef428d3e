"""The README's settings table is checked against the settings model, so the two cannot drift."""

from __future__ import annotations

import json
import re

from airflow_provider_alation.settings import (
    EXTRA_KEYS,
    AlationSettings,
    default_cache_dir,
    default_spool_dir,
)
from tests.support.airflow_home import REPO

ROW = re.compile(r"^\| `(?P<key>[a-z_]+)` \| `(?P<default>[^`]*)` \| (?P<meaning>.+) \|$")


def readme_settings() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {m["key"]: m["default"] for line in section.splitlines() if (m := ROW.match(line))}


def test_every_extra_key_is_documented_with_its_default(monkeypatch) -> None:
    documented = readme_settings()
    assert sorted(documented) == sorted(EXTRA_KEYS)
    monkeypatch.setenv("AIRFLOW_HOME", "$AIRFLOW_HOME")
    defaults = AlationSettings(url="https://x.example.com", token="t").model_dump(mode="json")
    for key in EXTRA_KEYS:
        if key in ("spool_dir", "cache_dir"):
            assert documented[key] == {"spool_dir": default_spool_dir, "cache_dir": default_cache_dir}[key]()
            continue
        expected = defaults[key]
        if isinstance(expected, dict) and key == "dags":
            expected = {k: list(v) for k, v in expected.items()}
        text = documented[key]
        actual = json.loads(text) if text[:1] in "{[0123456789tf" else text
        assert actual == expected, key


def test_documented_normalisers_are_the_built_in_ones() -> None:
    from airflow_provider_alation.lineage.normalisers import NORMALISERS

    text = (REPO / "README.md").read_text()
    for normaliser in NORMALISERS:
        assert f"`{normaliser.before}` | `{normaliser.after}`" in text, normaliser.before


def test_the_demo_installs_what_its_dag_needs() -> None:
    """The quickstart DAG's postgres:// assets become datasets only with the Postgres provider
    installed; CI's test environment always has it, so check the demo's own install instead."""
    import re

    import tomllib

    demo = (REPO / "scripts" / "demo.sh").read_text()
    (extra,) = re.findall(r"bootstrap\.sh\s+(\S+)", demo)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("apache-airflow-providers-postgres") for dep in extras[extra.strip('"')])


def _table_rows(heading: str) -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return rows[1:]  # without the header row


def test_the_check_sections_table_lists_every_section_in_order() -> None:
    from airflow_provider_alation.commands.check import SECTIONS

    documented = [row[0].strip("` ") for row in _table_rows("### The `airflow-alation` command")[:8]]
    assert documented == list(SECTIONS)


def test_troubleshooting_names_check_lines_the_check_produces() -> None:
    """Each ``section / check`` the troubleshooting table names is a section and a line of check.py."""
    from airflow_provider_alation.commands.check import SECTIONS

    source = (REPO / "airflow_provider_alation" / "commands" / "check.py").read_text()
    named = [
        ref
        for row in _table_rows("## Troubleshooting")
        for ref in re.findall(r"`([a-z]+) / ([^`]+)`", row[1])
    ]
    assert len(named) >= 10
    for section, check in named:
        assert section in SECTIONS, section
        assert check == "<conn_id>" or f'"{check}"' in source, check
