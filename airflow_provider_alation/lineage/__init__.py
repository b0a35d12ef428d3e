"""Pure lineage steps: the gate, namespace resolution and event shaping. No I/O, no Airflow."""
