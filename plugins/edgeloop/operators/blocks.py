"""A block step's operators: plan → run (mapped over batch ids) → collect.

The plan stores the batches in the catalog and returns their ids (never item lists):
the run task is mapped over them, at most ``transformationParallel`` at once
(``max_active_tis_per_dagrun``). ``collect`` adds the batches' counts up for the summary
and runs when the mapped task had nothing to do (``none_failed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from edgeloop.operators.base import PipelineTaskOperator


class _BlockStepOperator(PipelineTaskOperator):
    ui_color = "#fdf2d0"
    template_fields: Sequence[str] = ("step",)

    def __init__(self, *, step: str, spec: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.spec = spec

    def step_spec(self):  # -> edgeloop.transform.blocks.StepSpec
        from edgeloop.transform.blocks import StepSpec

        return StepSpec.from_dict(self.spec)


class BlockPlanOperator(_BlockStepOperator):
    """Select the step's units, leave out those already done, store the batches; returns
    the batch ids the run task is mapped over."""

    def execute(self, context: Context) -> list[int]:
        from edgeloop.transform.plan import plan_step

        self.check_config(context)
        force = bool((context.get("params") or {}).get("ignoreLastSuccessfulRun", False))
        plan = plan_step(
            self.step_spec(),
            pipeline_id=self.pipeline_id,
            run_id=context["run_id"],
            step=self.step,
            force=force,
        )
        context["ti"].xcom_push(key="plan", value=plan.counts())
        return plan.batches


class BlockBatchOperator(_BlockStepOperator):
    """Run one batch of the step (a mapped instance per batch id)."""

    def __init__(self, *, batch: int, runtime: str = "local", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.runtime = runtime

    def execute(self, context: Context) -> dict[str, int]:
        from edgeloop.transform.batch import run_batch

        self.check_config(context)
        return run_batch(
            self.step_spec(),
            pipeline_id=self.pipeline_id,
            run_id=context["run_id"],
            step=self.step,
            batch=int(self.batch),
            runtime=self.runtime,
        )


class BlockCollectOperator(_BlockStepOperator):
    """The step's counts over its batches (plus what the plan skipped)."""

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.transform.batch import collect_step

        self.check_config(context)
        counts = collect_step(
            pipeline_id=self.pipeline_id, run_id=context["run_id"], step=self.step
        )
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key="plan") or {}
        counts["selected"] = int(plan.get("selected", 0))
        counts["skipped"] += int(plan.get("skipped", 0))
        counts["block"] = self.spec["block_id"]  # type: ignore[assignment]
        self.log.info("block step %s: %s", self.step, counts)
        return counts
