"""Schemathesis fuzzes the plugin app from its own OpenAPI document (in process, with a
real catalog): no 5xx, status codes and JSON bodies as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgeloop.web.app import create_app

# Mounted as the api-server mounts a plugin's app: the document's server is /edgeloop.
APP = FastAPI()
APP.mount("/edgeloop", create_app(authenticate=False, emit_asset_event=lambda p, extra: True))


@schemathesis.serializer("application/cbor")
def _cbor(ctx, value) -> bytes:
    import cbor2

    return cbor2.dumps(value)


schema = schemathesis.openapi.from_asgi("/edgeloop/openapi.json", APP)


@pytest.fixture
def api_key(edgeloop_home: Path) -> str:
    from edgeloop.catalog.store import Catalog
    from edgeloop.web.keys import create_api_key

    return create_api_key(Catalog.from_settings(), "fuzz")["api_key"]


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case, api_key: str) -> None:
    headers = (
        {"x-api-key": api_key} if case.headers is None or "x-api-key" not in case.headers else None
    )
    case.call_and_validate(
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_an_out_of_range_row_id_is_a_422_naming_the_field(edgeloop_home: Path) -> None:
    """Found by the fuzzer: 2**63 as a portal id reached SQLite and raised (a 500)."""
    from fastapi.testclient import TestClient

    client = TestClient(APP)
    r = client.post("/edgeloop/portal/9223372036854775808/files", files={"files": ("a", b"x")})
    assert r.status_code == 422, r.text
    assert "portal_id" in r.text
