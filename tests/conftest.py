"""Shared fixtures: real local peers (an S3-compatible server process) and an
isolated Airflow + edgeloop home per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeloop.devenv import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server process on 127.0.0.1 for the whole session.

    Use ``s3_server.endpoint`` for the URL and ``s3_server.client()`` for a boto3
    client (credentials ``testing``/``testing``, region ``us-east-1``). Buckets are
    shared across tests: create your own with the ``s3_bucket`` fixture.
    """
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    server = S3Server(log_path=log).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_server: S3Server):
    """A boto3 S3 client talking to the session's server."""
    return s3_server.client()


@pytest.fixture
def s3_bucket(s3_client) -> str:
    """A fresh, empty bucket with a unique name on the session's server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
