"""One Airflow DAG per pipeline config in EDGELOOP_PIPELINES_DIR (see edgeloop.dag_factory).

An invalid config becomes a paused DAG tagged `invalid-config` that shows its errors;
it never hides the other pipelines.
"""

from edgeloop.dag_factory import build_dags

globals().update(build_dags())
