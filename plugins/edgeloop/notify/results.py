"""The outcome and the results of one pipeline run, from its summary and task states.

The run summary (``edgeloop.summary.summarize``) always has ``sync``,
``items_per_label`` and ``items_per_category``. Later steps add optional keys,
rendered when present (see docs/notifications.md):

- ``checklist``: ``{"ok": int, "fail": int}`` (items of this run passing/failing the checklist)
- ``training``: ``{"validation_accuracy": float, "test_accuracy": float}`` (model retrained)
- ``quality_gate``: ``{"decision": str, "reason": str}`` or a string
- ``version``: ``{"id": ..., "name": ...}`` or a scalar
- ``deployment``: ``{"artifact": ..., ...}`` or a scalar
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from edgeloop.errors import ConfigError

WhenToEmail = Literal["always", "on_new_data", "never"]
WHEN_TO_EMAIL: tuple[str, ...] = ("always", "on_new_data", "never")
DEFAULT_WHEN_TO_EMAIL: WhenToEmail = "on_new_data"

# The counts of the sync, in the order the email lists them.
SYNC_COUNTS: tuple[str, ...] = (
    "listed",
    "new",
    "updated",
    "unchanged",
    "duplicates",
    "skipped",
    "failed",
    "deleted",
)
# Counts that mean the dataset changed (items created, changed or deleted).
CHANGE_COUNTS: tuple[str, ...] = ("new", "updated", "deleted")

FAILED_STATES = frozenset({"failed", "upstream_failed"})


@dataclass(frozen=True)
class FailedTask:
    task_id: str
    state: str
    log_url: str


@dataclass(frozen=True)
class RunResults:
    """Everything a notification says about one run."""

    pipeline_id: str
    pipeline_name: str
    project: str
    run_id: str
    run_url: str
    success: bool
    organization_id: str | int | None = None
    failed_tasks: tuple[FailedTask, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return "succeeded" if self.success else "failed"

    @property
    def sync(self) -> dict[str, int]:
        sync = self.summary.get("sync") or {}
        return {k: int(sync.get(k, 0)) for k in SYNC_COUNTS}

    @property
    def new_items(self) -> int:
        return self.sync["new"]

    @property
    def has_new_data(self) -> bool:
        """True when the run created, changed or deleted items."""
        sync = self.sync
        return any(sync[k] for k in CHANGE_COUNTS)

    @property
    def checklist(self) -> tuple[int, int]:
        checklist = self.summary.get("checklist") or {}
        return int(checklist.get("ok", 0)), int(checklist.get("fail", 0))

    @property
    def accuracy(self) -> dict[str, float]:
        """Validation and test accuracy when a model was retrained (else empty)."""
        training = self.summary.get("training") or {}
        return {
            k: float(training[k])
            for k in ("validation_accuracy", "test_accuracy")
            if training.get(k) is not None
        }


def check_when_to_email(value: str) -> WhenToEmail:
    if value not in WHEN_TO_EMAIL:
        raise ConfigError(
            "unknown whenToEmail",
            path="whenToEmail",
            expected=" | ".join(WHEN_TO_EMAIL),
            value=value,
        )
    return value  # type: ignore[return-value]


def should_email(when: str, results: RunResults) -> bool:
    """``always``; ``on_new_data``: when items were created/changed, and on every failure;
    ``never``."""
    when = check_when_to_email(when)
    if when == "never":
        return False
    if when == "always":
        return True
    return not results.success or results.has_new_data


def failed_tasks(
    task_states: Mapping[str, str | None], *, exclude: frozenset[str] | set[str] = frozenset()
) -> list[tuple[str, str]]:
    """(task_id, state) of the tasks that failed or could not run because one failed."""
    return [
        (task_id, str(state))
        for task_id, state in sorted(task_states.items())
        if task_id not in exclude and state is not None and str(state) in FAILED_STATES
    ]


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_log_url(base_url: str, dag_id: str, run_id: str, task_id: str) -> str:
    """A task instance's page (with its log) in the Airflow UI."""
    return f"{run_url(base_url, dag_id, run_id)}/tasks/{quote(task_id)}"


def run_results(
    *,
    pipeline_id: str,
    pipeline_name: str,
    project: str,
    run_id: str,
    base_url: str,
    task_states: Mapping[str, str | None],
    summary: Mapping[str, Any] | None,
    organization_id: str | int | None = None,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> RunResults:
    """The run's results: failed when any other task failed or was upstream_failed.

    ``task_states`` maps task ids to Airflow task instance states (``exclude`` the
    notify task itself). A mapped task's instances appear as ``<task_id>_<index>``;
    the log link then points at the task. A missing summary (its task failed) is
    reported as such, never an error.
    """
    failed = failed_tasks(task_states, exclude=exclude)
    # The tasks that failed themselves first; upstream_failed ones follow.
    failed.sort(key=lambda item: item[1] != "failed")
    return RunResults(
        pipeline_id=pipeline_id,
        pipeline_name=pipeline_name,
        project=project,
        run_id=run_id,
        run_url=run_url(base_url, pipeline_id, run_id),
        success=not failed,
        organization_id=organization_id,
        failed_tasks=tuple(
            FailedTask(task_id, state, task_log_url(base_url, pipeline_id, run_id, task_id))
            for task_id, state in failed
        ),
        summary=dict(summary or {}),
    )


def describe(value: Any) -> str:
    """A short text for an optional summary value (a string, a number or a mapping)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return str(value)
