"""Build one Airflow DAG per pipeline config: config file → Pipeline model → tasks.

Parse time does no network I/O and imports no heavy library.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from edgeloop.config import Pipeline, load_pipelines
from edgeloop.errors import ConfigError
from edgeloop.operators.ingest import (
    InvalidConfigOperator,
    LabelOperator,
    RunSummaryOperator,
    S3SyncOperator,
    VerifySourceOperator,
)

log = logging.getLogger(__name__)

START = datetime(2024, 1, 1)


def _suffix(i: int) -> str:
    return "" if i == 0 else f"_{i + 1}"


def build_dag(pipeline: Pipeline) -> DAG:
    """The DAG of one validated pipeline: per import step verify → sync → label, then summary."""
    default_args = {
        "owner": pipeline.owner,
        "retries": pipeline.retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    }
    doc = f"### {pipeline.name}\n\n{pipeline.description}\n\nConfig: `{pipeline.source_file}`"
    with DAG(
        dag_id=pipeline.id,
        description=pipeline.name[:200],
        doc_md=doc,
        schedule=pipeline.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        tags=["edgeloop", f"project:{pipeline.project}", *pipeline.tags],
    ) as dag:
        results: list[str] = []
        previous = None
        for i, _step in enumerate(pipeline.steps):
            args = {"pipeline_file": pipeline.source_file, "step_index": i}
            verify = VerifySourceOperator(task_id=f"verify_source{_suffix(i)}", retries=0, **args)
            sync = S3SyncOperator(task_id=f"sync{_suffix(i)}", **args)
            label = LabelOperator(task_id=f"label{_suffix(i)}", **args)
            verify >> sync >> label
            if previous is not None:
                previous >> verify
            previous = label
            results += [sync.task_id, label.task_id]
        summary = RunSummaryOperator(
            task_id="summary", pipeline_file=pipeline.source_file, result_task_ids=results
        )
        if previous is not None:
            previous >> summary
    return dag


def build_dags(directory: str | Path | None = None) -> dict[str, DAG]:
    """Every valid pipeline's DAG. Invalid configs are reported, never fatal to the others."""
    if directory is None:
        from edgeloop.settings import get_settings

        directory = get_settings().pipelines_dir
    pipelines, errors = load_pipelines(directory)
    dags = {p.id: build_dag(p) for p in pipelines}
    for file, error in errors.items():
        log.error("pipeline config %s is invalid:\n%s", file, error)
        dag = build_invalid_config_dag(file, error, taken=dags.keys())
        dags[dag.dag_id] = dag
    return dags


def build_invalid_config_dag(file: str, error: ConfigError, taken=()) -> DAG:
    """A paused, unscheduled DAG that shows an invalid config's errors in the UI.

    Its description and docs carry the errors; its one task fails with them if
    triggered. The other pipelines' DAGs are unaffected.
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(file).stem) or "config"
    dag_id = stem if stem not in taken else f"invalid_{stem}"
    with DAG(
        dag_id=dag_id,
        dag_display_name=f"{dag_id} (INVALID CONFIG: see Docs)",
        description=f"INVALID CONFIG: {str(error).splitlines()[0]}"[:200],
        doc_md=f"### Invalid pipeline config `{file}`\n\n```\n{error}\n```\n\n"
        "Fix the file (check it with `edgeloop validate`); this DAG is replaced by "
        "the pipeline once the config is valid.",
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=True,
        default_args={"owner": "edgeloop", "retries": 0},
        tags=["edgeloop", "invalid-config"],
    ) as dag:
        InvalidConfigOperator(task_id="invalid_config", file=file, message=str(error))
    return dag
