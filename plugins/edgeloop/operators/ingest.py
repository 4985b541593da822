"""Thin operators: store arguments, load the validated pipeline, call a plain function.

Heavy libraries (boto3, SQLAlchemy work) are imported inside ``execute``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context


class InvalidConfigOperator(BaseOperator):
    """The one task of an invalid config's DAG: fails with the validation errors."""

    ui_color = "#f8d7da"

    def __init__(self, *, file: str, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file = file
        self.message = message

    def execute(self, context: Context) -> None:
        from edgeloop.errors import ConfigError

        raise ConfigError(
            f"pipeline config is invalid; run `edgeloop validate {self.file}`:\n{self.message}"
        )


class _PipelineStepOperator(BaseOperator):
    """Base for the tasks of one pipeline step; re-reads the config at run time."""

    ui_color = "#e8f4ea"

    def __init__(self, *, pipeline_file: str, step_index: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_file = pipeline_file
        self.step_index = step_index

    def load(self):  # -> (Pipeline, S3ImportStep)
        from edgeloop.config import load_pipeline

        pipeline = load_pipeline(self.pipeline_file)
        return pipeline, pipeline.steps[self.step_index]


class VerifySourceOperator(_PipelineStepOperator):
    """List one page of the source: fail fast on wrong credentials or path."""

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.ingest.sync import verify_source

        pipeline, step = self.load()
        return verify_source(step, file=pipeline.source_file)


class S3SyncOperator(_PipelineStepOperator):
    """Incremental sync of the step's prefix into the project's dataset."""

    def execute(self, context: Context) -> dict[str, int]:
        from edgeloop.ingest.sync import sync_step

        pipeline, step = self.load()
        return sync_step(pipeline, step, run_id=context["run_id"])


class LabelOperator(_PipelineStepOperator):
    """Label and split the items the sync brought in or changed."""

    def execute(self, context: Context) -> dict[str, int]:
        from edgeloop.ingest.sync import label_step

        pipeline, step = self.load()
        return label_step(pipeline, step)


class RunSummaryOperator(_PipelineStepOperator):
    """Merge the step results of this run, add dataset counts, store and log it."""

    def __init__(self, *, result_task_ids: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result_task_ids = result_task_ids

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.summary import format_summary, summarize

        pipeline, _ = self.load()
        results = {tid: context["ti"].xcom_pull(task_ids=tid) for tid in self.result_task_ids}
        summary = summarize(pipeline, context["run_id"], results)
        for line in format_summary(summary).splitlines():
            self.log.info("%s", line)
        return summary
