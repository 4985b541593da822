"""The run webhook: the seed's JSON payload, signed with HMAC-SHA256, POSTed with
retries (tenacity) on connection errors, timeouts and 5xx answers.

A receiver sees:

- ``X-Edgeloop-Timestamp``: Unix seconds at signing;
- ``X-Edgeloop-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``.

It recomputes the signature over the raw body (``verify_signature``) and rejects
old timestamps to stop replays. Delivery never raises: ``deliver`` returns what
happened (``Delivery``) for the task log and the run summary.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from edgeloop.notify.results import RunResults

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Edgeloop-Signature"
TIMESTAMP_HEADER = "X-Edgeloop-Timestamp"
# The keys of the reference payload, in its order; extras follow under their own names.
SEED_KEYS: tuple[str, ...] = (
    "organizationId",
    "pipelineId",
    "pipelineName",
    "projectId",
    "success",
    "newItems",
    "newChecklistOK",
    "newChecklistFail",
)
DEFAULT_ATTEMPTS = 5
DEFAULT_TIMEOUT = 10.0
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt; doubled each time, at most 30 s


def build_payload(results: RunResults) -> dict[str, Any]:
    """The seed's eight keys, then the extras (run id and URL, sync counts, accuracy, ...)."""
    ok, fail = results.checklist
    payload: dict[str, Any] = {
        "organizationId": results.organization_id,
        "pipelineId": results.pipeline_id,
        "pipelineName": results.pipeline_name,
        "projectId": results.project,
        "success": results.success,
        "newItems": results.new_items,
        "newChecklistOK": ok,
        "newChecklistFail": fail,
        "runId": results.run_id,
        "runUrl": results.run_url,
        "updatedItems": results.sync["updated"],
        "deletedItems": results.sync["deleted"],
        "failedTasks": [t.task_id for t in results.failed_tasks],
    }
    accuracy = results.accuracy
    if accuracy:
        payload["accuracy"] = {
            "validation": accuracy.get("validation_accuracy"),
            "test": accuracy.get("test_accuracy"),
        }
    for key, name in (
        ("quality_gate", "qualityGate"),
        ("version", "version"),
        ("deployment", "deployment"),
    ):
        if results.summary.get(key) not in (None, "", {}):
            payload[name] = results.summary[key]
    return payload


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of timestamp + "." + body>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and (with ``tolerance``) is recent."""
    if tolerance is not None:
        try:
            age = (time.time() if now is None else now) - int(timestamp)
        except ValueError:
            return False
        if abs(age) > tolerance:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Delivery:
    """What happened to one webhook delivery (safe to log and to store: no secret)."""

    url: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    signed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def safe_url(url: str) -> str:
    """The URL without user info or query (which may carry tokens), for logs and summaries."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def deliver(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT,
    backoff: float = DEFAULT_BACKOFF,
    max_backoff: float = 30.0,
) -> Delivery:
    """POST ``payload`` to ``url``; retry connection errors, timeouts and 5xx with
    exponential backoff; never raise. 2xx is delivered; 4xx is final (not retried)."""
    import requests
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    body = encode(payload)
    shown = safe_url(url)
    tries = 0

    def post() -> requests.Response:
        nonlocal tries
        tries += 1
        headers = {"Content-Type": "application/json", "User-Agent": "edgeloop-webhook"}
        if secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        try:
            response = requests.post(url, data=body, headers=headers, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            log.warning("webhook %s: attempt %s: %s", shown, tries, type(exc).__name__)
            raise
        if response.status_code >= 500:
            log.warning("webhook %s: attempt %s: HTTP %s", shown, tries, response.status_code)
            raise _RetryableStatus(response.status_code)
        return response

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff, min=backoff, max=max_backoff),
        retry=retry_if_exception_type(
            (requests.ConnectionError, requests.Timeout, _RetryableStatus)
        ),
        reraise=False,
    )
    try:
        response = retrying(post)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        status = last.status if isinstance(last, _RetryableStatus) else None
        error = str(last) if status else f"{type(last).__name__}: {_short(last, url)}"
        delivery = Delivery(shown, False, tries, status, error, bool(secret))
    except requests.RequestException as exc:  # invalid URL and other non-retryable errors
        error = f"{type(exc).__name__}: {_short(exc, url)}"
        delivery = Delivery(shown, False, tries, None, error, bool(secret))
    else:
        ok = 200 <= response.status_code < 300
        delivery = Delivery(
            shown,
            ok,
            tries,
            response.status_code,
            None if ok else f"HTTP {response.status_code}",
            bool(secret),
        )
    if delivery.delivered:
        log.info("webhook %s: delivered (HTTP %s, %s attempt(s))", shown, delivery.status, tries)
    else:
        log.warning(
            "webhook %s: NOT delivered after %s attempt(s): %s", shown, tries, delivery.error
        )
    return delivery


def _short(exc: BaseException | None, url: str, limit: int = 300) -> str:
    """The error's text without the URL's query or user info (they may hold tokens)."""
    text = str(exc) if exc is not None else ""
    parts = urlsplit(url)
    for private in (parts.query, parts.username, parts.password):
        if private:
            text = text.replace(private, "***")
    return text if len(text) <= limit else text[:limit] + "..."
