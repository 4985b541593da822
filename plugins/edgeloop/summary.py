"""The run summary: what a run did, and what the dataset holds after it."""

from __future__ import annotations

from typing import Any

from edgeloop.catalog.store import Catalog
from edgeloop.config import Pipeline
from edgeloop.ingest.sync import SYNC_KEYS


def summarize(
    pipeline: Pipeline,
    run_id: str,
    results: dict[str, dict[str, Any] | None],
    *,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Add up the sync counts of a run's steps, attach dataset counts, record the run."""
    catalog = catalog or Catalog.from_settings()
    sync = dict.fromkeys(SYNC_KEYS, 0)
    for task_id, result in results.items():
        if result and task_id.startswith("sync"):
            for key in SYNC_KEYS:
                sync[key] += int(result.get(key, 0))
    counts = catalog.counts(pipeline.project)
    summary = {
        "pipeline": pipeline.id,
        "project": pipeline.project,
        "run_id": run_id,
        "sync": sync,
        "items_per_label": counts["label"],
        "items_per_category": counts["category"],
    }
    catalog.record_run(pipeline.id, run_id, pipeline.project, summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    sync = summary["sync"]
    lines = [
        f"pipeline {summary['pipeline']} (project {summary['project']}), run {summary['run_id']}",
        "  sync:  " + ", ".join(f"{k} {sync[k]}" for k in SYNC_KEYS),
        "  items per label:    "
        + (
            ", ".join(f"{k or '(unlabeled)'} {v}" for k, v in summary["items_per_label"].items())
            or "none"
        ),
        "  items per category: "
        + (
            ", ".join(f"{k or '(none)'} {v}" for k, v in summary["items_per_category"].items())
            or "none"
        ),
    ]
    return "\n".join(lines)
