"""Test utilities, shipped on purpose and supported: test your own DAGs or deployment without a tenant.

- :mod:`~airflow_provider_alation.testing.fake_alation`: an HTTPS stand-in for Alation's OpenLineage
  endpoint and data-source API (``FakeAlation``, and a command line:
  ``python -m airflow_provider_alation.testing.fake_alation --help``);
- :mod:`~airflow_provider_alation.testing.catalog`: realistic and synthetic Alation data-source records.

A test double, not a server for production.
"""
