"""Run a pipeline from code: trigger, follow and stop its DAG runs through the Airflow
REST API v2 (``client``), and the copy-paste samples that do the same (``snippets``)."""
