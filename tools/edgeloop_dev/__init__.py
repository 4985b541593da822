"""Development helpers (local S3 server, demo data, Airflow homes): not in the runtime package."""
