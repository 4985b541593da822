"""The Airflow plugin's web app: pages, the ingestion API, upload portals, device intake."""
