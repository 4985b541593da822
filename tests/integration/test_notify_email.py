"""The run email against a real SMTP server (aiosmtpd on 127.0.0.1, with AUTH), sent
through an Airflow SMTP connection given as ``AIRFLOW_CONN_<ID>``."""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgeloop.notify.dispatch import send_notifications
from edgeloop.notify.email import build_message, send_message
from edgeloop.notify.results import run_results
from edgeloop_dev.devenv import free_port

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-smtp-pw"
CONN_ID = "smtp_notify_test"


@dataclass
class Mailbox:
    messages: list = field(default_factory=list)  # (mail_from, rcpt_tos, EmailMessage)
    logins: list = field(default_factory=list)  # (login, password)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD))


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch):
    """A real SMTP server requiring AUTH, and the Airflow connection to it."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "login": SMTP_USER,
        "password": SMTP_PASSWORD,
        "extra": {
            "disable_tls": True,
            "disable_ssl": True,
            "from_email": "edgeloop@example.org",
            "retry_limit": 0,
        },
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    try:
        yield box
    finally:
        controller.stop()


def _png(path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


def _summary(new: int = 3, updated: int = 0) -> dict:
    return {
        "pipeline": "demo",
        "project": "digits",
        "run_id": "manual__1",
        "sync": {
            "listed": 10,
            "new": new,
            "updated": updated,
            "unchanged": 7 - updated,
            "duplicates": 1,
            "skipped": 0,
            "failed": 0,
            "deleted": 0,
        },
        "items_per_label": {"0": 5, "1": 4, "": 1},
        "items_per_category": {"training": 8, "testing": 2},
        "checklist": {"ok": 2, "fail": 1},
        "training": {"validation_accuracy": 0.9312, "test_accuracy": 0.9},
        "quality_gate": {"decision": "accepted", "reason": "accuracy 0.90 >= 0.85"},
        "version": {"id": 7},
    }


def _results(summary: dict | None, states: dict | None = None):
    return run_results(
        pipeline_id="demo",
        pipeline_name="Demo digits",
        project="digits",
        run_id="manual__1",
        base_url="http://localhost:8080",
        task_states=states or {"sync": "success", "label": "success", "summary": "success"},
        summary=summary,
    )


def test_email_arrives_with_both_parts_and_the_png(smtp: Mailbox, tmp_path: Path) -> None:
    png = _png(tmp_path / "explorer.png")
    results = _results(_summary(new=3))
    msg = build_message(results, recipients=["a@example.org", "b@example.org"], explorer_png=png)
    assert send_message(msg, conn_id=CONN_ID) == ["a@example.org", "b@example.org"]

    assert smtp.logins == [(SMTP_USER, SMTP_PASSWORD)]  # the password came from the connection
    [(mail_from, rcpts, got)] = smtp.messages
    assert mail_from == "edgeloop@example.org"  # the connection's from_email
    assert rcpts == ["a@example.org", "b@example.org"]
    assert got["Subject"] == "[edgeloop] Demo digits: succeeded, 3 new items"
    text = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    for part in (text, html):
        for expected in (
            "listed",
            "duplicates",
            "deleted",
            "(unlabeled)",
            "training",
            "93.12%",  # validation accuracy
            "90.00%",  # test accuracy
            "accepted",
            "id 7",
            "http://localhost:8080/dags/demo/runs/manual__1",
        ):
            assert expected in part, (expected, part)
    assert "<table>" in html and "<table>" not in text
    [attachment] = list(got.iter_attachments())
    assert attachment.get_filename() == "explorer.png"
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_content() == png.read_bytes()


CASES = [
    # (whenToEmail, new items, updated items, failed run, email expected)
    ("always", 3, 0, False, True),
    ("always", 0, 0, False, True),
    ("always", 0, 0, True, True),
    ("on_new_data", 3, 0, False, True),
    ("on_new_data", 0, 2, False, True),  # changed items count as new data
    ("on_new_data", 0, 0, False, False),
    ("on_new_data", 0, 0, True, True),  # failures always
    ("never", 3, 0, False, False),
    ("never", 0, 0, True, False),
]


@pytest.mark.parametrize(("when", "new", "updated", "failed", "expected"), CASES)
def test_when_to_email(
    smtp: Mailbox,
    tmp_path: Path,
    when: str,
    new: int,
    updated: int,
    failed: bool,
    expected: bool,
) -> None:
    states = {"sync": "success", "label": "failed" if failed else "success", "summary": "success"}
    results = _results(_summary(new=new, updated=updated), states)
    png = _png(tmp_path / "explorer.png")
    report = send_notifications(
        results,
        email_recipients=["team@example.org"],
        when_to_email=when,
        email_conn_id=CONN_ID,
        explorer_png=png,
    )
    assert report["email"]["sent"] is expected
    assert len(smtp.messages) == int(expected)
    if expected:
        got = smtp.messages[0][2]
        outcome = "failed" if failed else "succeeded"
        assert f"Demo digits: {outcome}, {new} new item" in got["Subject"]
        # The explorer image only goes with new data.
        attached = [p.get_filename() for p in got.iter_attachments()]
        assert attached == (["explorer.png"] if new or updated else [])
        assert report["email"]["attachments"] == attached


def test_failure_email_names_the_failed_task_and_its_log(smtp: Mailbox) -> None:
    states = {"verify_source": "success", "sync": "failed", "label": "upstream_failed"}
    states["summary"] = "upstream_failed"
    report = send_notifications(
        _results(None, states),
        email_recipients=["team@example.org"],
        when_to_email="on_new_data",
        email_conn_id=CONN_ID,
    )
    assert report["email"]["sent"] is True
    got = smtp.messages[0][2]
    assert got["Subject"] == "[edgeloop] Demo digits: failed, 0 new items"
    text = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    log_url = "http://localhost:8080/dags/demo/runs/manual__1/tasks/sync"
    assert re.search(rf"\n +failed task +sync +<{re.escape(log_url)}>", text), text
    assert f'<a href="{log_url}">sync</a>' in html
    assert "summary task did not complete" in text


def test_a_wrong_password_is_reported_not_raised_and_never_shown(
    smtp: Mailbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    conn = json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"])
    conn["password"] = "wrong-password-123"
    conn["extra"]["timeout"] = 5  # aiosmtpd may leave a refused LOGIN hanging
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    report = send_notifications(
        _results(_summary()),
        email_recipients=["team@example.org"],
        when_to_email="always",
        email_conn_id=CONN_ID,
    )
    assert report["email"]["sent"] is False
    assert f"connection '{CONN_ID}' failed: SMTP" in report["email"]["error"]
    assert smtp.messages == []
    assert "wrong-password-123" not in json.dumps(report) + caplog.text


def test_the_explorer_png_refreshed_by_the_run_comes_from_the_blob_store(
    smtp: Mailbox, edgeloop_home: Path, tmp_path: Path
) -> None:
    import hashlib

    from edgeloop.storage.blobs import BlobStore

    data = _png(tmp_path / "map.png").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    blobs = BlobStore.from_settings()
    temp, out = blobs.open_temp()
    with out:  # put before closing (the temp file is locked while open)
        out.write(data)
        out.flush()
        blobs.put(temp, sha)

    def send(summary: dict) -> list:
        before = len(smtp.messages)
        send_notifications(
            _results(summary),
            email_recipients=["team@example.org"],
            when_to_email="always",
            email_conn_id=CONN_ID,
        )
        [(_, _, got)] = smtp.messages[before:]
        return list(got.iter_attachments())

    [attachment] = send({**_summary(new=2), "explorer": {"png_sha": sha, "map": 3}})
    assert attachment.get_filename() == "explorer.png"
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_content() == data
    # no new data, a map not refreshed by this run, or a blob that is gone: no attachment
    assert send({**_summary(new=0), "explorer": {"png_sha": sha}}) == []
    assert send({**_summary(new=2), "explorer": {"png_sha": sha, "refreshed": False}}) == []
    assert send({**_summary(new=2), "explorer": {"png_sha": "0" * 64}}) == []
