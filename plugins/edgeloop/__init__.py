"""edgeloop: automated ML data pipelines for the edge, on Apache Airflow 3.

Keep this module free of imports: Airflow's DAG processor imports the package at
parse time.
"""

__version__ = "0.1.0"
