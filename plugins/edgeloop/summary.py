"""The run summary: what a run did, and what the dataset holds after it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from edgeloop.ingest.sync import SYNC_KEYS

UNLABELED = "(unlabeled)"  # the one spelling of "no label", in the summary and `edgeloop stats`
NO_CATEGORY = "(none)"
LABEL_KEYS = ("labeled", "unlabeled", "training", "testing")
BLOCK_KEYS = ("selected", "ran", "skipped", "failed", "created", "updated", "unchanged")
WIDTH = 100


def shown_counts(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The catalog's counts with the empty label/category spelled out."""
    return {
        "label": {(k or UNLABELED): v for k, v in counts.get("label", {}).items()},
        "category": {(k or NO_CATEGORY): v for k, v in counts.get("category", {}).items()},
    }


def summarize(
    pipeline_id: str,
    project: str,
    run_id: str,
    *,
    sync_results: Sequence[dict[str, Any] | None] = (),
    label_results: Sequence[dict[str, Any] | None] = (),
    block_results: Sequence[dict[str, Any] | None] = (),
    action_results: Mapping[str, Sequence[dict[str, Any] | None]] | None = None,
    catalog=None,  # edgeloop.catalog.store.Catalog
) -> dict[str, Any]:
    """Add up the results of a run's steps, attach dataset counts, record the run."""
    from edgeloop.catalog.store import Catalog

    catalog = catalog or Catalog.from_settings()
    sync = dict.fromkeys(SYNC_KEYS, 0)
    for result in sync_results:
        for key in SYNC_KEYS:
            sync[key] += int((result or {}).get(key, 0))
    label = dict.fromkeys(LABEL_KEYS, 0)
    warnings: list[str] = []
    for result in label_results:
        for key in LABEL_KEYS:
            label[key] += int((result or {}).get(key, 0))
        warnings += (result or {}).get("warnings", [])
    counts = shown_counts(catalog.counts(project))
    summary = {
        "pipeline": pipeline_id,
        "project": project,
        "run_id": run_id,
        "sync": sync,
        "label": label,
        "warnings": warnings,
        "items_per_label": counts["label"],
        "items_per_category": counts["category"],
    }
    if block_results:
        from edgeloop.transform.batch import checklist_counts

        blocks = dict.fromkeys(BLOCK_KEYS, 0)
        for result in block_results:
            for key in BLOCK_KEYS:
                blocks[key] += int((result or {}).get(key, 0))
        summary["blocks"] = blocks
        # newChecklistOK / newChecklistFail: over the items this run created or changed
        summary["checklist"] = checklist_counts(catalog, pipeline_id, run_id)
    summary.update(action_summary(action_results or {}))
    catalog.record_run(pipeline_id, run_id, project, summary)
    return summary


def _last(results: Sequence[dict[str, Any] | None] | None) -> dict[str, Any] | None:
    done = [r for r in results or () if r]
    return done[-1] if done else None


def action_summary(results: Mapping[str, Sequence[dict[str, Any] | None]]) -> dict[str, Any]:
    """The project actions' keys of the summary, from their tasks' results (None: the task
    was skipped or did not run): ``training``, ``quality_gate``, ``explorer``, ``version``,
    ``deployment`` (with ``skipped`` and the reason when the quality gate stopped it)."""
    out: dict[str, Any] = {}
    retrain = _last(results.get("retrain"))
    if retrain:
        out["training"] = {
            "model": retrain["model"],
            "validation_accuracy": retrain["validation_accuracy"],
            "test_accuracy": retrain["test_accuracy"],
            "promoted": retrain["promoted"],
        }
        gate = retrain["gate"]
        out["quality_gate"] = {
            "passed": gate["passed"],
            "reason": gate["reason"],
            "max_drop": gate["max_drop"],
            "current_model": gate["current_model"],
            "current_test_accuracy": gate["current_test_accuracy"],
            "new_test_accuracy": gate["new_test_accuracy"],
        }
    explorer = _last(results.get("explorer"))
    if explorer:
        keys = ("map", "png", "png_sha", "points", "new", "suggestions")
        out["explorer"] = {k: explorer.get(k) for k in keys}
    deploy = _last(results.get("deploy"))
    if deploy:
        from edgeloop.operators.actions import verification_text

        deployment = {
            "number": deploy["deployment"],
            "model": deploy["model"],
            "model_type": deploy["model_type"],
            "zip": deploy["zip"],
            "zip_sha": deploy["zip_sha"],
            "verification": verification_text(deploy.get("verification")),
            "accuracy": deploy.get("accuracy"),
            "published": deploy["published"],
        }
        if deploy.get("require_approval"):
            published = _last(results.get("publish"))
            deployment["published"] = bool(published)
            deployment["approval"] = "approved" if published else "rejected (not published)"
        out["deployment"] = deployment
    elif results.get("deploy") and retrain and not retrain["promoted"]:
        out["deployment"] = {
            "skipped": f"model {retrain['model']} did not pass the quality gate: "
            f"{retrain['gate']['reason']}"
        }
    version = _last(results.get("version"))
    if version:
        out["version"] = version["version"]
    return out


def changes(summary: dict[str, Any]) -> dict[str, int]:
    """The counts a run's asset event carries."""
    sync = summary.get("sync", {})
    blocks = summary.get("blocks", {})
    return {
        "new": int(sync.get("new", 0)) + int(blocks.get("created", 0)),
        "updated": int(sync.get("updated", 0)) + int(blocks.get("updated", 0)),
        "deleted": int(sync.get("deleted", 0)),
        "items": sum(summary.get("items_per_label", {}).values()),
    }


def _wrapped(title: str, counts: dict[str, int], empty: str = "none") -> list[str]:
    text = ", ".join(f"{k} {v}" for k, v in counts.items()) or empty
    head = f"  {title}: "
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    )


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as readable lines (long lists wrap)."""
    sync = summary["sync"]
    lines = [
        f"pipeline {summary['pipeline']} (project {summary['project']}), run {summary['run_id']}",
        *_wrapped("sync", {k: sync[k] for k in SYNC_KEYS if k in sync}),
    ]
    if sync.get("gone"):
        lines.append(
            f"  {sync['gone']} item(s) are no longer in the source; they are kept "
            "(set syncDeletions to mark them deleted)"
        )
    if summary.get("label"):
        lines += _wrapped("label", summary["label"])
    if summary.get("blocks"):
        lines += _wrapped("blocks", summary["blocks"])
    if "checklist" in summary:
        lines += _wrapped("checklist (items created or changed)", summary["checklist"])
    labels = summary.get("items_per_label", {})
    lines.append(f"  items: {sum(labels.values())} in {len(labels)} label(s)")
    lines += _wrapped("items per label", {(k or UNLABELED): v for k, v in labels.items()})
    lines += _wrapped(
        "items per category",
        {(k or NO_CATEGORY): v for k, v in summary.get("items_per_category", {}).items()},
    )
    lines += _action_lines(summary)
    for warning in summary.get("warnings", ()):
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def _action_lines(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if training := summary.get("training"):
        lines.append(
            f"  model {training['model']}: validation accuracy "
            f"{training['validation_accuracy']:.4f}, test accuracy {training['test_accuracy']:.4f}"
        )
    if gate := summary.get("quality_gate"):
        lines.append(f"  quality gate {'passed' if gate['passed'] else 'FAILED'}: {gate['reason']}")
    if explorer := summary.get("explorer"):
        lines.append(
            f"  explorer map {explorer['map']}: {explorer['points']} points, {explorer['new']} "
            f"new, {explorer['suggestions']} suggestion(s); PNG {explorer['png']}"
        )
    if (version := summary.get("version")) is not None:
        lines.append(f"  version {version}")
    if deployment := summary.get("deployment"):
        if "skipped" in deployment:
            lines.append(f"  deployment skipped: {deployment['skipped']}")
        else:
            lines.append(
                f"  deployment {deployment['number']} ({deployment['model_type']}, model "
                f"{deployment['model']}): {deployment['zip']}"
            )
            lines.append(f"  verification: {deployment['verification']}")
            state = deployment.get("approval") or (
                "published" if deployment["published"] else "not published"
            )
            lines.append(f"  deployment {deployment['number']}: {state}")
    return lines
