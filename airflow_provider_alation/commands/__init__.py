"""The command line: ``airflow-alation`` / ``airflow alation`` and ``check``."""
