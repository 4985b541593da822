"""The `notify` task inside real Airflow runs (`airflow dags test`): the email reaches a real
SMTP server (aiosmtpd, with AUTH) through an SMTP connection, the signed webhook reaches
a real HTTP receiver; whenToEmail for a run with and without new data and for a failed
run; a receiver that is down leaves the pipeline green with the failed delivery in the
run summary."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from edgeloop.notify.webhook import SEED_KEYS, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from edgeloop_dev.devenv import free_port

pytestmark = pytest.mark.slow

SMTP_USER = "mailer"
SMTP_PASSWORD = f"smtp-pw-{uuid.uuid4().hex[:8]}"
SIGNING_SECRET = f"whsec-{uuid.uuid4().hex[:8]}"
RECIPIENTS = ["ops@example.org", "ml@example.org"]


@dataclass
class Mailbox:
    port: int = 0
    messages: list = field(default_factory=list)  # (mail_from, rcpt_tos, EmailMessage)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        ok = (auth_data.login.decode(), auth_data.password.decode()) == (SMTP_USER, SMTP_PASSWORD)
        return AuthResult(success=ok)


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def receiver(new_webhook_receiver):  # -> conftest.WebhookReceiver
    with new_webhook_receiver("/hooks/edgeloop") as rec:
        yield rec


@pytest.fixture(scope="module")
def env(airflow_env, s3_server, mailbox: Mailbox, receiver):
    """The Airflow home with the S3, SMTP and webhook connections, and a bucket of 4 images."""
    airflow_env.add_s3_connection("notify_s3", s3_server.endpoint)
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": mailbox.port,
        "login": SMTP_USER,
        "password": SMTP_PASSWORD,
        "extra": {
            "disable_tls": True,
            "disable_ssl": True,
            "from_email": "edgeloop@example.org",
            "retry_limit": 0,
        },
    }
    airflow_env.env["AIRFLOW_CONN_SMTP_E2E"] = json.dumps(smtp)
    airflow_env.env["AIRFLOW_CONN_WEBHOOK_E2E"] = json.dumps(
        {"conn_type": "generic", "password": SIGNING_SECRET}
    )
    client = s3_server.client()
    client.create_bucket(Bucket="notify-e2e")
    for i in range(4):
        key = f"in/{'ab'[i % 2]}/{i}.png"
        client.put_object(Bucket="notify-e2e", Key=key, Body=bytes([i]) * 32)
    return airflow_env


def pipeline(pid: str, path: str = "s3://notify-e2e/in/", **fields) -> dict:
    return {
        "id": pid,
        "name": f"Notify {pid}",
        "schedule": None,
        "retries": 0,
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": path,
                    "awsConnId": "notify_s3",
                },
            }
        ],
        **fields,
    }


def run_state(env, dag_id: str) -> str:
    runs = env.airflow_json("dags", "list-runs", dag_id)
    return sorted(runs, key=lambda r: r["run_id"])[-1]["state"]


def summary(env, pid: str) -> dict:
    return json.loads(env.edgeloop("summary", pid, "--json"))


def test_email_and_signed_webhook_with_and_without_new_data(
    env, mailbox: Mailbox, receiver
) -> None:
    env.add_pipeline(
        "notify_ok.json",
        pipeline(
            "notify_ok",
            emailRecipients=RECIPIENTS,
            emailConnId="smtp_e2e",
            notificationWebhook=receiver.url + "?team=ml",
            webhookConnId="webhook_e2e",
            organizationId=7,
        ),
    )
    env.airflow("dags", "test", "notify_ok")
    assert run_state(env, "notify_ok") == "success"

    # the email: right recipients, subject, both parts with the results
    [(mail_from, rcpts, msg)] = mailbox.messages
    assert (mail_from, rcpts) == ("edgeloop@example.org", RECIPIENTS)
    assert msg["To"] == ", ".join(RECIPIENTS)
    assert msg["Subject"] == "[edgeloop] Notify notify_ok: succeeded, 4 new items"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        for expected in ("listed", "duplicates", "Items per label", "/dags/notify_ok/runs/"):
            assert expected in part, (expected, part)
    assert "<table>" in html

    # the webhook: the seed's keys first, with their types; signed with the connection's secret
    [(headers, body, path)] = receiver.requests
    assert path == "/hooks/edgeloop?team=ml"
    payload = json.loads(body)
    assert list(payload)[: len(SEED_KEYS)] == list(SEED_KEYS)
    assert payload["organizationId"] == 7
    assert (payload["pipelineId"], payload["pipelineName"]) == ("notify_ok", "Notify notify_ok")
    assert payload["projectId"] == "notify_ok"
    assert payload["success"] is True
    assert payload["newItems"] == 4
    assert type(payload["newChecklistOK"]) is int and type(payload["newChecklistFail"]) is int
    assert payload["runId"].startswith("manual__") and payload["failedTasks"] == []
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify_signature(SIGNING_SECRET, timestamp, body, signature)
    assert not verify_signature("another-secret", timestamp, body, signature)

    recorded = summary(env, "notify_ok")
    assert recorded["success"] is True and recorded["sync"]["new"] == 4
    notes = recorded["notifications"]
    assert notes["email"]["sent"] is True and notes["email"]["recipients"] == RECIPIENTS
    assert notes["webhook"]["delivered"] is True and notes["webhook"]["signed"] is True
    assert notes["webhook"]["url"] == receiver.url  # recorded without its query

    # a second run brings no new data: on_new_data sends no email; the webhook still goes
    env.airflow("dags", "test", "notify_ok")
    assert len(mailbox.messages) == 1
    second = receiver.payloads()[-1]
    assert len(receiver.requests) == 2 and second["success"] is True and second["newItems"] == 0
    notes = summary(env, "notify_ok")["notifications"]
    assert notes["email"] == {
        "sent": False,
        "reason": "whenToEmail is on_new_data and the run brought no new data",
    }


def test_a_failed_run_emails_and_reports_success_false(env, mailbox: Mailbox, receiver) -> None:
    env.add_pipeline(
        "notify_fail.json",
        pipeline(
            "notify_fail",
            path="s3://no-such-bucket-notify/in/",
            emailRecipients=RECIPIENTS[:1],
            emailConnId="smtp_e2e",
            notificationWebhook=receiver.url,
        ),
    )
    before_mail, before_hooks = len(mailbox.messages), len(receiver.requests)
    env.airflow("dags", "test", "notify_fail", check=False)
    # notify ran and succeeded, but the run is failed: notify never decides the outcome
    assert run_state(env, "notify_fail") == "failed"

    [(_, rcpts, msg)] = mailbox.messages[before_mail:]  # on_new_data: failures always
    assert rcpts == RECIPIENTS[:1]
    assert msg["Subject"] == "[edgeloop] Notify notify_fail: failed, 0 new items"
    text = msg.get_body(("plain",)).get_content()
    assert re.search(r"\n +failed task +import\.verify_source +<http", text), text
    assert "/dags/notify_fail/runs/" in text and "/tasks/import.verify_source" in text

    [(headers, body, _)] = receiver.requests[before_hooks:]
    payload = json.loads(body)
    assert payload["success"] is False and payload["newItems"] == 0
    assert payload["failedTasks"][0] == "import.verify_source"
    assert SIGNATURE_HEADER not in headers  # no webhookConnId: unsigned

    recorded = summary(env, "notify_fail")
    assert recorded["success"] is False and recorded["summary_missing"] is True
    assert recorded["failed_tasks"][0] == "import.verify_source"
    assert recorded["notifications"]["email"]["sent"] is True


def test_a_receiver_that_is_down_leaves_the_run_green(env, mailbox: Mailbox) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    env.add_pipeline(
        "notify_down.json",
        pipeline(
            "notify_down",
            emailRecipients=RECIPIENTS,
            emailConnId="smtp_e2e",
            whenToEmail="never",
            notificationWebhook=down,
            webhookConnId="webhook_e2e",
        ),
    )
    before_mail = len(mailbox.messages)
    env.airflow("dags", "test", "notify_down")
    assert run_state(env, "notify_down") == "success"
    assert len(mailbox.messages) == before_mail  # whenToEmail never, despite new data

    recorded = summary(env, "notify_down")
    assert recorded["success"] is True and recorded["sync"]["new"] == 4
    webhook = recorded["notifications"]["webhook"]
    assert (webhook["delivered"], webhook["attempts"], webhook["status"]) == (False, 5, None)
    assert webhook["error"].startswith("ConnectionError") and webhook["url"] == down
    assert recorded["notifications"]["email"] == {"sent": False, "reason": "whenToEmail is never"}
    log = env.log.read_text(errors="replace")
    assert "NOT delivered after 5 attempt(s)" in log
