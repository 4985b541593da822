"""Thin Airflow operators, grouped by what they run."""
