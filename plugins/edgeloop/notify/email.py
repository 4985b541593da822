"""The run email: subject, plain-text and HTML parts with the full results, the data
explorer PNG attached; sent through the smtp provider's SmtpHook (an Airflow
connection holds host, port, TLS, login and password)."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from edgeloop.errors import EdgeloopError
from edgeloop.notify.results import SYNC_COUNTS, RunResults, describe

log = logging.getLogger(__name__)

DEFAULT_SENDER = "edgeloop@localhost"
DEFAULT_EMAIL_CONN_ID = "smtp_default"
EXPLORER_FILENAME = "explorer.png"


class EmailError(EdgeloopError):
    """The run email could not be built or sent."""


def subject(results: RunResults) -> str:
    new = results.new_items
    return (
        f"[edgeloop] {results.pipeline_name}: {results.outcome}, "
        f"{new} new item{'' if new == 1 else 's'}"
    )


Row = tuple[str, str, str | None]  # name, value, link


def _sections(results: RunResults) -> list[tuple[str, list[Row]]]:
    """The results as titled sections of rows, shared by both parts."""
    run: list[Row] = [
        ("pipeline", f"{results.pipeline_name} ({results.pipeline_id})", None),
        ("project", results.project, None),
        ("run", results.run_id, results.run_url),
        ("outcome", results.outcome, None),
    ]
    for task in results.failed_tasks:
        run.append((f"{task.state} task", task.task_id, task.log_url))
    sections: list[tuple[str, list[Row]]] = [("Run", run)]
    if not results.summary:
        run.append(("summary", "not available (the summary task did not complete)", None))
        return sections
    sync = results.sync
    sections.append(("Sync", [(k, str(sync[k]), None) for k in SYNC_COUNTS]))
    for key, title, empty in (
        ("items_per_label", "Items per label", "(unlabeled)"),
        ("items_per_category", "Items per category", "(none)"),
    ):
        counts = results.summary.get(key) or {}
        rows: list[Row] = [(k or empty, str(v), None) for k, v in counts.items()]
        sections.append((title, rows or [("none", "0", None)]))
    ok, fail = results.checklist
    sections.append(("Checklist", [("OK", str(ok), None), ("fail", str(fail), None)]))
    model: list[Row] = [
        (key.replace("_", " "), f"{value:.2%}", None) for key, value in results.accuracy.items()
    ]
    for key in ("quality_gate", "version", "deployment"):
        if results.summary.get(key) not in (None, "", {}):
            model.append((key.replace("_", " "), describe(results.summary[key]), None))
    if model:
        sections.append(("Model", model))
    return sections


def render_text(results: RunResults) -> str:
    lines = [f"Pipeline {results.pipeline_name} {results.outcome}.", ""]
    for title, rows in _sections(results):
        lines.append(title)
        width = max(len(name) for name, _, _ in rows)
        for name, value, link in rows:
            lines.append(f"  {name:<{width}}  {value}" + (f"  <{link}>" if link else ""))
        lines.append("")
    lines.append(f"Run in Airflow: {results.run_url}")
    return "\n".join(lines) + "\n"


def render_html(results: RunResults) -> str:
    e = html.escape
    colour = "#1a7f37" if results.success else "#cf222e"
    parts = [
        '<html><body style="font-family: sans-serif">',
        f"<h2>{e(results.pipeline_name)}: "
        f'<span style="color: {colour}">{e(results.outcome)}</span></h2>',
    ]
    for title, rows in _sections(results):
        parts.append(f"<h3>{e(title)}</h3><table>")
        for name, value, link in rows:
            cell = f'<a href="{e(link)}">{e(value)}</a>' if link else e(value)
            parts.append(f"<tr><td>{e(name)}</td><td>{cell}</td></tr>")
        parts.append("</table>")
    parts.append(f'<p><a href="{e(results.run_url)}">Open the run in Airflow</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_message(
    results: RunResults,
    *,
    recipients: Sequence[str],
    sender: str = DEFAULT_SENDER,
    explorer_png: str | Path | bytes | None = None,
) -> EmailMessage:
    """The multipart message: text/plain and text/html alternatives, plus the data
    explorer PNG (a file, or its bytes as ``explorer.png``) when one is given, exists
    and the run brought new data."""
    if not recipients:
        raise EmailError("the run email has no recipients (emailRecipients is empty)")
    msg = EmailMessage()
    msg["Subject"] = subject(results)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(render_text(results))
    msg.add_alternative(render_html(results), subtype="html")
    if isinstance(explorer_png, bytes):
        if results.has_new_data:
            msg.add_attachment(
                explorer_png, maintype="image", subtype="png", filename=EXPLORER_FILENAME
            )
        return msg
    png = Path(explorer_png) if explorer_png else None
    if png is not None and results.has_new_data:
        if png.is_file():
            msg.add_attachment(png.read_bytes(), maintype="image", subtype="png", filename=png.name)
        else:
            log.warning("the data explorer image %s does not exist: not attached", png)
    return msg


def send_message(msg: EmailMessage, *, conn_id: str = DEFAULT_EMAIL_CONN_ID) -> list[str]:
    """Send ``msg`` through the SMTP connection ``conn_id``; return the recipients.

    SmtpHook opens the connection (TLS/SSL, login and password from the Airflow
    connection, its retry limit); the message is sent on the hook's client. The
    ``from_email`` of the connection's extra, when set, is the sender.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    recipients = [a.strip() for a in str(msg["To"]).split(",") if a.strip()]
    try:
        with SmtpHook(smtp_conn_id=conn_id) as hook:
            if hook.from_email:
                msg.replace_header("From", hook.from_email)
            client = hook._smtp_client  # the hook has no public call for a ready MIME message
            refused = client.send_message(msg, to_addrs=recipients)
    except Exception as exc:  # smtplib, socket and Airflow errors alike
        raise EmailError(
            f"sending the run email through connection {conn_id!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    delivered = [r for r in recipients if r not in (refused or {})]
    log.info("sent the run email to %s through connection %s", ", ".join(delivered), conn_id)
    return delivered
