"""Send a run's notifications and record what happened in the run summary.

Notifications never fail the run: an unreachable SMTP server or webhook receiver
is logged and recorded under the summary's ``notifications`` key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeloop.notify.results import RunResults, should_email

log = logging.getLogger(__name__)


def send_notifications(
    results: RunResults,
    *,
    email_recipients: Sequence[str] = (),
    when_to_email: str = "on_new_data",
    email_conn_id: str = "smtp_default",
    explorer_png: str | Path | bytes | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    webhook_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Email (per ``when_to_email``) and webhook (always, when a URL is set).

    Without ``explorer_png``, the data explorer image refreshed by this run (the
    summary's ``explorer.png_sha``) is read from the blob store and attached.

    Returns ``{"email": {...}, "webhook": {...}}``: what was sent, skipped or failed.
    No secret is in it.
    """
    from edgeloop.notify.email import EmailError, build_message, send_message
    from edgeloop.notify.webhook import build_payload, deliver

    report: dict[str, Any] = {}
    if not email_recipients:
        report["email"] = {"sent": False, "reason": "no recipients"}
    elif not should_email(when_to_email, results):
        reason = f"whenToEmail is {when_to_email}" + (
            " and the run brought no new data" if when_to_email == "on_new_data" else ""
        )
        log.info("no run email: %s", reason)
        report["email"] = {"sent": False, "reason": reason}
    else:
        try:
            if explorer_png is None and results.has_new_data:
                explorer_png = explorer_image(results)
            msg = build_message(results, recipients=email_recipients, explorer_png=explorer_png)
            delivered = send_message(msg, conn_id=email_conn_id)
            attached = [p.get_filename() for p in msg.iter_attachments()]
            report["email"] = {
                "sent": True,
                "recipients": delivered,
                "subject": str(msg["Subject"]),
                "attachments": attached,
            }
        except EmailError as exc:
            log.error("run email not sent: %s", exc)
            report["email"] = {"sent": False, "error": str(exc)}
    if webhook_url:
        delivery = deliver(
            webhook_url, build_payload(results), secret=webhook_secret, **(webhook_options or {})
        )
        report["webhook"] = delivery.as_dict()
    else:
        report["webhook"] = {"delivered": False, "reason": "no notificationWebhook"}
    return report


def explorer_image(results: RunResults, *, blobs=None) -> bytes | None:
    """The PNG of the data explorer map this run refreshed (summary ``explorer.png_sha``),
    from the blob store; None when the run made none or the blob cannot be read."""
    explorer = results.summary.get("explorer")
    if not isinstance(explorer, dict) or explorer.get("refreshed") is False:
        return None
    sha = explorer.get("png_sha")
    if not sha:
        return None
    try:
        if blobs is None:
            from edgeloop.storage.blobs import BlobStore

            blobs = BlobStore.from_settings()
        with blobs.open(str(sha)) as f:
            return f.read()
    except Exception as exc:  # a missing image must not stop the email
        log.warning("the data explorer image %s cannot be read (%s): not attached", sha, exc)
        return None


def record_notifications(
    results: RunResults, report: dict[str, Any], *, catalog=None
) -> dict[str, Any]:
    """Add ``success``, ``failed_tasks`` and ``notifications`` to the run's recorded summary.

    The summary recorded for this run (or, when its task failed, the one given in
    ``results``) is extended and recorded again; with no summary at all a minimal one
    is recorded so the failed run and its notifications are still visible.
    """
    from edgeloop.catalog.store import Catalog

    catalog = catalog or Catalog.from_settings()
    summary = recorded_summary(catalog, results.pipeline_id, results.run_id)
    if summary is None:
        summary = dict(results.summary)
    if not summary:
        from edgeloop.ingest.sync import SYNC_KEYS

        counts = catalog.counts(results.project)
        summary = {
            "pipeline": results.pipeline_id,
            "project": results.project,
            "run_id": results.run_id,
            "sync": dict.fromkeys(SYNC_KEYS, 0),
            "items_per_label": counts["label"],
            "items_per_category": counts["category"],
            "summary_missing": True,
        }
    summary.update(
        success=results.success,
        failed_tasks=[t.task_id for t in results.failed_tasks],
        notifications=report,
    )
    catalog.record_run(results.pipeline_id, results.run_id, results.project, summary)
    return summary


def recorded_summary(catalog, pipeline_id: str, run_id: str) -> dict[str, Any] | None:
    """The summary recorded for one run of a pipeline, or None."""
    import json

    import sqlalchemy as sa

    from edgeloop.catalog.tables import runs

    with catalog.engine.connect() as conn:
        row = conn.execute(
            sa.select(runs.c.summary)
            .where((runs.c.pipeline_id == pipeline_id) & (runs.c.run_id == run_id))
            .order_by(runs.c.id.desc())
            .limit(1)
        ).first()
    return json.loads(row[0]) if row else None
