"""The "Alation lineage" page in Airflow 3's UI (api-server): the check's answers where users look."""
