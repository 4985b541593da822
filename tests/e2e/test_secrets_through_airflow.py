"""An inline encrypted S3 secret, the SMTP password and the webhook signing secret work
through Airflow and their plaintext appears nowhere: not in task logs, XCom, rendered
templates (all in the Airflow home and its metadata DB) nor in the catalog (the run
summary) or blob store."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgeloop.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from edgeloop_dev.devenv import bin_path, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def smtp_server():
    """A real SMTP server requiring AUTH: yields (port, logins, messages)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    logins: list[tuple[str, str]] = []
    messages: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            policy = email.policy.default
            messages.append(email.message_from_bytes(envelope.original_content, policy=policy))
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate,
        auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        yield port, logins, messages
    finally:
        controller.stop()


@pytest.fixture
def webhook_receiver():
    """A real HTTP receiver: yields (url, requests as (headers, body))."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_secret_never_leaks(airflow_env, s3_server, smtp_server, webhook_receiver) -> None:
    secret = f"plain-{uuid.uuid4().hex}"
    smtp_password = f"smtp-{uuid.uuid4().hex}"
    signing_secret = f"whsec-{uuid.uuid4().hex}"
    smtp_port, logins, messages = smtp_server
    hook_url, hooks = webhook_receiver
    airflow_env.env["AIRFLOW_CONN_SECRET_SMTP"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp_port,
            "login": "mailer",
            "password": smtp_password,
            "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 0},
        }
    )
    airflow_env.env["AIRFLOW_CONN_SECRET_WEBHOOK"] = json.dumps(
        {"conn_type": "generic", "password": signing_secret}
    )
    token = subprocess.run(
        [bin_path("edgeloop"), "encrypt-secret"],
        input=secret,
        capture_output=True,
        text=True,
        env=airflow_env.env,
        check=True,
    ).stdout.strip()
    assert token and secret not in token
    client = s3_server.client()
    client.create_bucket(Bucket="secret-e2e")
    client.put_object(Bucket="secret-e2e", Key="in/cat/1.png", Body=b"png bytes")
    airflow_env.add_pipeline(
        "secret.json",
        {
            "id": "secret_e2e",
            "name": "inline credentials",
            "project": "secret_e2e",
            "emailRecipients": ["ops@example.org"],
            "emailConnId": "secret_smtp",
            "notificationWebhook": hook_url,
            "webhookConnId": "secret_webhook",
            "steps": [
                {
                    "name": "import",
                    "builtinTransformationBlock": {
                        "type": "s3-to-project",
                        "path": "s3://secret-e2e/in/",
                        "endpoint": s3_server.endpoint,
                        "region": "us-east-1",
                        "accessKey": "AKIAEDGELOOPTEST",
                        "secretKeyEncrypted": token,
                    },
                }
            ],
        },
    )
    airflow_env.airflow("dags", "test", "secret_e2e")
    summary = json.loads(airflow_env.edgeloop("summary", "secret_e2e", "--json"))
    assert summary["sync"]["new"] == 1
    # the notifications went out with the connections' secrets
    assert logins == [("mailer", smtp_password)] and len(messages) == 1
    assert summary["notifications"]["email"]["sent"] is True
    [(headers, body)] = hooks
    assert verify_signature(
        signing_secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )
    assert summary["notifications"]["webhook"]["signed"] is True

    # the task logs were captured: the sync's own log line is there
    assert b"syncing s3://secret-e2e/in/ into project secret_e2e" in airflow_env.log.read_bytes()
    root = airflow_env.log.parent  # the Airflow home, its DB, the edgeloop home, the logs
    searched = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "airflow.db" for p in searched)
    assert any(p.name == "catalog.db" for p in searched)  # the run summary
    assert b"webhook http://127.0.0.1" in airflow_env.log.read_bytes()  # notify's log
    for needle in (secret, smtp_password, signing_secret):
        for path in searched:
            assert needle.encode() not in path.read_bytes(), f"a secret leaked into {path}"
    text = json.dumps(summary) + body.decode()
    assert smtp_password not in text and signing_secret not in text
