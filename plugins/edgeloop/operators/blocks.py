"""A block step's operator: one mapped task, ``run``, one instance per slot.

The slots are a literal list known when the DAG is built (``range(slots)``, ``slots`` =
``transformationParallel`` capped by ``[core] max_map_length``; one for a standalone
block), so the step costs one task hop. Each slot gets the run's plan (the first to
arrive makes and stores it, the others read it: ``edgeloop.transform.plan``), then runs
its own batch if the plan has one (``edgeloop.transform.batch.run_slot``). At most
``transformationParallel`` run at once (``max_active_tis_per_dagrun``). Each slot returns
its counts; slot 0 adds the plan's (selected, and the units left out as done), so the
summary adds the step's counts up over the mapped task's XComs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from edgeloop.operators.base import PipelineTaskOperator

RUN_TASK_ID = "run"  # the mapped task of a block step's task group


class BlockSlotOperator(PipelineTaskOperator):
    """One slot of a block step: the run's plan, then the slot's batch of it."""

    ui_color = "#fdf2d0"
    template_fields: Sequence[str] = ("step",)

    def __init__(
        self,
        *,
        step: str,
        spec: dict[str, Any],
        slot: int,
        slots: int,
        runtime: str = "local",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.spec = spec
        self.slot = slot
        self.slots = slots
        self.runtime = runtime

    def step_spec(self):  # -> edgeloop.transform.blocks.StepSpec
        from edgeloop.transform.blocks import StepSpec

        return StepSpec.from_dict(self.spec)

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.transform.batch import run_slot

        self.check_config(context)
        force = bool((context.get("params") or {}).get("ignoreLastSuccessfulRun", False))
        counts: dict[str, Any] = dict(
            run_slot(
                self.step_spec(),
                pipeline_id=self.pipeline_id,
                run_id=context["run_id"],
                step=self.step,
                slot=int(self.slot),
                slots=int(self.slots),
                force=force,
                runtime=self.runtime,
            )
        )
        counts["block"] = self.spec["block_id"]
        self.log.info("block step %s, slot %s: %s", self.step, self.slot, counts)
        return counts


def mapped_results(value: Any) -> list[dict[str, Any]]:
    """The per-slot results of a mapped task as ``xcom_pull`` returns them: a list, or the
    one value when the task has a single instance (a standalone block), None for none."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if v]
