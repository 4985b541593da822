"""The run webhook against a real HTTP receiver (http.server in a thread on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgeloop.notify.dispatch import record_notifications, send_notifications
from edgeloop.notify.results import run_results
from edgeloop.notify.webhook import (
    SEED_KEYS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_payload,
    deliver,
    verify_signature,
)
from edgeloop_dev.devenv import free_port

SECRET = "whsec-test-9f2c"
FAST = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0}


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers, in order; then 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hooks/edgeloop?token=abc")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append((dict(self.headers.items()), body))
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def _results(success: bool = True, organization_id=None, summary: dict | None = None):
    states = {"sync": "success", "label": "success" if success else "failed"}
    return run_results(
        pipeline_id="demo",
        pipeline_name='Import data from portal "Data sources demo"',
        project="digits",
        run_id="manual__2026-11-22T10:00:00+00:00",
        base_url="http://localhost:8080/",
        task_states=states,
        summary=summary
        if summary is not None
        else {
            "sync": {"listed": 12, "new": 4, "updated": 1, "deleted": 0},
            "items_per_label": {"cars": 3},
            "items_per_category": {"training": 3},
            "checklist": {"ok": 3, "fail": 1},
            "training": {"validation_accuracy": 0.91, "test_accuracy": 0.88},
            "version": {"id": 3},
        },
        organization_id=organization_id,
    )


def test_payload_keys_and_types(receiver: Receiver) -> None:
    delivery = deliver(receiver.url, build_payload(_results(organization_id=42)), secret=SECRET)
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    [(headers, body)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert tuple(payload)[: len(SEED_KEYS)] == SEED_KEYS  # the seed's keys, exactly
    types = {
        "organizationId": int,
        "pipelineId": str,
        "pipelineName": str,
        "projectId": str,
        "success": bool,
        "newItems": int,
        "newChecklistOK": int,
        "newChecklistFail": int,
        "runId": str,
        "runUrl": str,
    }
    for key, kind in types.items():
        assert type(payload[key]) is kind, (key, payload[key])
    assert payload["pipelineName"] == 'Import data from portal "Data sources demo"'
    assert (payload["success"], payload["newItems"]) == (True, 4)
    assert (payload["newChecklistOK"], payload["newChecklistFail"]) == (3, 1)
    assert payload["runUrl"] == (
        "http://localhost:8080/dags/demo/runs/manual__2026-11-22T10%3A00%3A00%2B00%3A00"
    )
    assert payload["accuracy"] == {"validation": 0.91, "test": 0.88}
    assert payload["version"] == {"id": 3}


def test_failure_payload_and_null_organization(receiver: Receiver) -> None:
    deliver(receiver.url, build_payload(_results(success=False, summary={})), **FAST)
    payload = json.loads(receiver.requests[0][1])
    assert payload["success"] is False
    assert payload["organizationId"] is None
    assert payload["failedTasks"] == ["label"]
    assert payload["newItems"] == 0
    assert SIGNATURE_HEADER not in receiver.requests[0][0]  # no secret: unsigned


def test_signature_verifies_with_the_secret_only(receiver: Receiver) -> None:
    deliver(receiver.url, build_payload(_results()), secret=SECRET)
    [(headers, body)] = receiver.requests
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(SECRET, timestamp, body, signature)
    assert not verify_signature("another-secret", timestamp, body, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)  # tampered body
    assert not verify_signature(SECRET, str(int(timestamp) - 1), body, signature)
    # A replay: the same request, an hour later.
    assert not verify_signature(SECRET, timestamp, body, signature, now=int(timestamp) + 3600)


def test_503_twice_then_200_takes_three_attempts(receiver: Receiver) -> None:
    receiver.statuses = [503, 503]
    delivery = deliver(receiver.url, build_payload(_results()), secret=SECRET, **FAST)
    assert (delivery.delivered, delivery.attempts, delivery.status) == (True, 3, 200)
    assert len(receiver.requests) == 3
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same payload each time, signed afresh
    for headers, body in receiver.requests:
        assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])


def test_a_4xx_is_final(receiver: Receiver) -> None:
    receiver.statuses = [400]
    delivery = deliver(receiver.url, build_payload(_results()), **FAST)
    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 1, 400)
    assert delivery.error == "HTTP 400"


def test_a_receiver_that_stays_5xx_is_recorded(receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    delivery = deliver(receiver.url, build_payload(_results()), attempts=4, **FAST)
    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 4, 500)
    assert len(receiver.requests) == 4


def test_a_receiver_that_is_down_is_recorded_in_the_run_summary(
    edgeloop_home, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeloop.catalog.store import Catalog

    url = f"http://127.0.0.1:{free_port()}/hook?token=private-token"  # nothing listens
    results = _results()
    catalog = Catalog.from_settings()
    # The summary task recorded the run before notify runs.
    recorded = {**results.summary, "explorer": {"png": "explorer.png"}}
    catalog.record_run("demo", results.run_id, "digits", recorded)
    report = send_notifications(
        results,
        webhook_url=url,
        webhook_secret=SECRET,
        webhook_options={"attempts": 3, **FAST},
    )  # no exception: the task stays green
    webhook = report["webhook"]
    assert (webhook["delivered"], webhook["attempts"], webhook["status"]) == (False, 3, None)
    assert webhook["error"].startswith("ConnectionError")
    assert webhook["url"].endswith("/hook")  # no query (it may carry a token)
    record_notifications(results, report, catalog=catalog)
    last = catalog.last_run("demo")
    assert last["notifications"]["webhook"] == webhook
    assert last["success"] is True
    # The recorded summary was extended, not replaced.
    assert last["explorer"] == {"png": "explorer.png"} and last["sync"]["new"] == 4
    text = json.dumps(last) + caplog.text
    assert "private-token" not in text and SECRET not in text
