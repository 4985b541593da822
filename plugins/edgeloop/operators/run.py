"""Run-level operators: the summary, the project's asset event, the invalid-config task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from edgeloop.operators.base import PipelineTaskOperator


class RunSummaryOperator(PipelineTaskOperator):
    """Add up this run's sync, label and block results, attach the dataset's counts, store,
    log. ``block_task_ids`` are the block steps' mapped ``run`` tasks: each id gives the
    list of its slots' results (slot 0 carries the plan's counts)."""

    template_fields: Sequence[str] = ("project",)

    def __init__(
        self,
        *,
        project: str,
        sync_task_ids: Sequence[str] = (),
        label_task_ids: Sequence[str] = (),
        block_task_ids: Sequence[str] = (),
        action_task_ids: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.sync_task_ids = list(sync_task_ids)
        self.label_task_ids = list(label_task_ids)
        self.block_task_ids = list(block_task_ids)
        # project actions: kind (explorer, retrain, deploy, approval, publish, version) -> ids
        self.action_task_ids = {k: list(v) for k, v in (action_task_ids or {}).items()}

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.operators.blocks import mapped_results
        from edgeloop.summary import format_summary, summarize

        self.check_config(context)
        ti = context["ti"]
        # a block step's slots, flattened; {} keeps the blocks' keys when none returned
        blocks = [r for t in self.block_task_ids for r in mapped_results(ti.xcom_pull(task_ids=t))]
        summary = summarize(
            self.pipeline_id,
            self.project,
            context["run_id"],
            sync_results=[ti.xcom_pull(task_ids=t) for t in self.sync_task_ids],
            label_results=[ti.xcom_pull(task_ids=t) for t in self.label_task_ids],
            block_results=blocks or ([{}] if self.block_task_ids else []),
            action_results={
                kind: [ti.xcom_pull(task_ids=t) for t in task_ids]
                for kind, task_ids in self.action_task_ids.items()
            },
        )
        for line in format_summary(summary).splitlines():
            self.log.info("%s", line)
        return summary


class PublishOperator(PipelineTaskOperator):
    """Emit the project's asset event when the run created, changed or deleted items.

    Skipped when nothing changed: a skipped task emits no event, so DAGs scheduled
    on the project's asset run only on new data. The event's ``extra`` holds the
    run's counts.
    """

    ui_color = "#dbe9f6"

    def __init__(self, *, summary_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary_task_id = summary_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from edgeloop.summary import changes

        self.check_config(context)
        summary = context["ti"].xcom_pull(task_ids=self.summary_task_id) or {}
        extra = changes(summary)
        if not any(extra[k] for k in ("new", "updated", "deleted")):
            raise AirflowSkipException("no item was created, changed or deleted: no asset event")
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {**extra, "run_id": context["run_id"]}
        self.log.info("asset event for %s: %s", [a.name for a in self.outlets], extra)
        return extra


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
