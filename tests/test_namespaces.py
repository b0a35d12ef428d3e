from __future__ import annotations

import pytest

from airflow_provider_alation.lineage.namespaces import canonical, parse_namespace
from airflow_provider_alation.lineage.resolution import NamespaceResolver


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://prod-db.example.com:5432", "postgres://prod-db.example.com:5432"),
        ("postgresql://PROD-DB.example.com", "postgres://prod-db.example.com:5432"),
        (
            "jdbc:postgresql://prod-db.example.com:5432/sales_db",
            "postgres://prod-db.example.com:5432/sales_db",
        ),
        ("sqlserver://sql.example.com", "mssql://sql.example.com:1433"),
        ("mysql://db.example.com", "mysql://db.example.com:3306"),
        ("redshift://cluster.us-east-1", "redshift://cluster.us-east-1:5439"),
        ("s3://bucket", "s3://bucket"),
        ("bigquery", "bigquery"),
        ("file:///tmp/data", "file:///tmp/data"),
        ("postgres://[::1]:5432", "postgres://[::1]:5432"),
    ],
)
def test_canonical_form(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


def test_parse_keeps_host_and_port_apart() -> None:
    parsed = parse_namespace("jdbc:postgresql://user:pw@Prod-DB.example.com:6432/db")
    assert (parsed.scheme, parsed.host, parsed.port) == ("postgres", "prod-db.example.com", 6432)


def test_rule_order_exact_then_host_then_regex() -> None:
    resolver = NamespaceResolver.from_map(
        {
            "re:^postgres://10\\.0\\.0\\.(\\d+):5432$": "postgres://replica-\\1.example.com:5432",
            "10.0.0.5:5432": "host-rule.example.com:5432",
            "postgresql://10.0.0.5": "postgres://exact-rule.example.com:5432",
        }
    )
    exact = resolver.resolve("postgres://10.0.0.5:5432")
    assert (exact.namespace, exact.rule) == ("postgres://exact-rule.example.com:5432", "exact")
    regex = resolver.resolve("postgres://10.0.0.7:5432")
    assert (regex.namespace, regex.rule) == ("postgres://replica-7.example.com:5432", "regex")


def test_host_alias_keeps_scheme_and_fills_port() -> None:
    resolver = NamespaceResolver.from_map(
        {"pgbouncer.internal:6432": "prod-db.example.com:5432", "bastion.internal": "db.example.com"}
    )
    assert (
        resolver.resolve("postgres://pgbouncer.internal:6432").namespace
        == "postgres://prod-db.example.com:5432"
    )
    # A bare host key matches that host on any port; a bare host value keeps the port.
    assert resolver.resolve("mysql://bastion.internal:3307").namespace == "mysql://db.example.com:3307"
    # Default ports are filled in on both sides before matching: 5432 is not 6432.
    unmatched = resolver.resolve("postgres://pgbouncer.internal")
    assert (unmatched.namespace, unmatched.rule) == ("postgres://pgbouncer.internal:5432", "normaliser")


def test_unmatched_namespace_is_sent_as_emitted() -> None:
    resolution = NamespaceResolver.from_map({"a.example.com:5432": "b.example.com:5432"}).resolve(
        "postgres://elsewhere.internal:5432"
    )
    assert resolution.rule == "unchanged"
    assert resolution.namespace == "postgres://elsewhere.internal:5432"
    assert not resolution.changed


def test_default_port_is_matched_implicitly() -> None:
    resolver = NamespaceResolver.from_map({"postgres://db.internal:5432": "postgres://db.example.com:5432"})
    assert resolver.resolve("postgres://db.internal").namespace == "postgres://db.example.com:5432"


def test_expressions_keep_their_order_across_scheme_buckets() -> None:
    resolver = NamespaceResolver.from_map(
        {
            "re:^(postgres)://10\\.1\\.(.*)$": "postgres://generic-first.example.com:5432",
            "re:^postgres://10\\.1\\.0\\.1:5432$": "postgres://specific-second.example.com:5432",
            "re:^mysql://(.*)$": "mysql://mysql-rule.example.com:3306",
        }
    )
    # The first expression (no literal scheme prefix) still wins over the later postgres-only one.
    assert (
        resolver.resolve("postgres://10.1.0.1:5432").namespace == "postgres://generic-first.example.com:5432"
    )
    assert resolver.resolve("mysql://anything:3306").namespace == "mysql://mysql-rule.example.com:3306"
    assert resolver.resolve("trino://10.1.0.1:8080").rule == "unchanged"


def test_a_backtracking_rule_cannot_hang_resolution() -> None:
    """Python's re takes 4 s with this rule on a 16-letter label and 63 s on 20; RE2 is linear."""
    import threading

    from airflow_provider_alation.lineage.resolution import NamespaceResolver

    rule = r"re:^postgres://([a-z0-9-]+\.?)+\.prod\.internal:5432$"
    resolver = NamespaceResolver.from_map({rule: "postgres://db.example.com:5432"})
    hosts = ["a" * n + ".prod.internal:6432" for n in (16, 20, 64, 4096)] + ["x.y.prod.internal:5432"]
    results: list[str] = []
    worker = threading.Thread(
        target=lambda: results.extend(resolver.resolve(f"postgres://{h}").namespace for h in hosts)
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "resolution hung on a backtracking expression"
    assert results[-1] == "postgres://db.example.com:5432"
    assert results[:4] == [f"postgres://{h}" for h in hosts[:4]]
