-- The edgeloop catalog: its own database beside Airflow's metadata database.
CREATE DATABASE edgeloop OWNER airflow;
