"""Shared fixtures: real local peers (an S3-compatible server process) and an
isolated Airflow + edgeloop home."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgeloop_dev.devenv import S3Server, airflow_environ, bin_path, free_port, run_logged, tail


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
def conn_id(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh Airflow connection (environment variable) to the session's S3 server."""
    from edgeloop_dev.devenv import s3_connection_environ

    name = f"s3_{uuid.uuid4().hex[:8]}"
    for key, value in s3_connection_environ(name, s3_server.endpoint).items():
        monkeypatch.setenv(key, value)
    return name


PG_HOST = "127.0.0.1"  # the test PostgreSQL server: port 5432, user postgres, trust auth


@contextmanager
def fresh_pg_database(*, migrate: bool = False) -> Iterator[str]:
    """A fresh database on the test PostgreSQL server, dropped (connections closed) at the
    end; yields its SQLAlchemy URL. ``migrate`` brings it to the newest catalog schema.
    Skips the test when psycopg2 or the server is missing."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(
            host=PG_HOST, user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on {PG_HOST}:5432: {exc}")
    admin.autocommit = True
    db = f"edgeloop_test_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg2://postgres@{PG_HOST}/{db}"
    try:
        admin.cursor().execute(f"CREATE DATABASE {db}")
        if migrate:
            from edgeloop.catalog.store import upgrade

            upgrade(url)
        yield url
    finally:
        from edgeloop.catalog.store import engine_for

        engine_for(url).dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def new_pg_database() -> Callable[..., AbstractContextManager[str]]:
    """``with new_pg_database() as url:`` a fresh PostgreSQL database (see
    ``fresh_pg_database``); session-scoped, so module-scoped fixtures can use it."""
    return fresh_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (skipped without a server)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def edgeloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh edgeloop home (SQLite catalog, local blobs) with its catalog migrated."""
    from edgeloop.catalog.store import upgrade
    from edgeloop.settings import get_settings

    monkeypatch.setenv("EDGELOOP_HOME", str(tmp_path / "home"))
    for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
        monkeypatch.delenv(key, raising=False)
    upgrade(get_settings().catalog_url)
    return tmp_path / "home"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(
    request: pytest.FixtureRequest,
    edgeloop_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_pg_database: Callable[..., AbstractContextManager[str]],
) -> Iterator[str]:
    """Each test that takes it runs twice: on the home's SQLite catalog and on a fresh,
    migrated PostgreSQL database."""
    if request.param == "sqlite":
        from edgeloop.settings import get_settings

        yield get_settings().catalog_url
        return
    with new_pg_database(migrate=True) as url:
        monkeypatch.setenv("EDGELOOP_CATALOG_URL", url)
        yield url


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@dataclass
class AirflowEnv:
    """An isolated Airflow home (SQLite, LocalExecutor) with its own edgeloop home and
    pipelines folder; commands run as subprocesses with output in ``log``."""

    home: Path
    pipelines_dir: Path
    env: dict[str, str]
    log: Path

    @property
    def edgeloop_home(self) -> Path:
        return Path(self.env["EDGELOOP_HOME"])

    def add_pipeline(self, name: str, config: dict | list | str) -> Path:
        path = self.pipelines_dir / name
        path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
        return path

    def add_s3_connection(self, conn_id: str, endpoint: str) -> None:
        from edgeloop_dev.devenv import s3_connection_environ

        self.env.update(s3_connection_environ(conn_id, endpoint))

    def airflow(self, *args: str, check: bool = True, timeout: float = 600) -> int:
        """Run ``airflow ARGS``; on failure the assertion shows the log's tail."""
        code = run_logged(
            [bin_path("airflow"), *args],
            env=self.env,
            log_path=self.log,
            timeout=timeout,
            check=False,
        )
        if check:
            assert code == 0, f"airflow {' '.join(args)} exited {code}:\n{tail(self.log, 80)}"
        return code

    def airflow_json(self, *args: str) -> object:
        """Run an ``airflow ... -o json`` command and parse its standard output."""
        proc = subprocess.run(
            [bin_path("airflow"), *args, "-o", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        with open(self.log, "a") as out:
            out.write(f"\n$ airflow {' '.join(args)} -o json\n{proc.stdout}{proc.stderr}")
        assert proc.returncode == 0, f"airflow {' '.join(args)}: {proc.stderr[-3000:]}"
        # Warnings may be printed to stdout before the document: take its last line.
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def edgeloop(self, *args: str) -> str:
        """Run the ``edgeloop`` CLI in this environment; return its standard output."""
        proc = subprocess.run(
            [bin_path("edgeloop"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"edgeloop {' '.join(args)}: {proc.stderr[-3000:]}"
        return proc.stdout


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """A migrated, isolated Airflow home per test module (``airflow db migrate`` ~15 s).

    DAGs come from the repo's ``dags/``; pipelines from an empty temp folder that
    the test fills with ``airflow_env.add_pipeline``.
    """
    root = tmp_path_factory.mktemp("airflow")
    pipelines = root / "pipelines"
    pipelines.mkdir()
    env = {
        **os.environ,
        **airflow_environ(root / "home", pipelines_dir=pipelines, edgeloop_home=root / "edgeloop"),
    }
    for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
        env.pop(key, None)  # this home's defaults, never the caller's
    ae = AirflowEnv(home=root / "home", pipelines_dir=pipelines, env=env, log=root / "airflow.log")
    ae.airflow("db", "migrate")
    ae.edgeloop("db", "upgrade")
    return ae


@dataclass
class WebhookReceiver:
    """A local HTTP server that records every POST as (headers, body, path)."""

    url: str
    requests: list[tuple[dict[str, str], bytes, str]] = field(default_factory=list)

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, body, _ in self.requests]

    def of(self, pipeline: str) -> list[tuple[dict, dict[str, str], bytes]]:
        """(payload, headers, body) of each request about ``pipeline``."""
        return [
            (p, h, b)
            for h, b, _ in self.requests
            if (p := json.loads(b)).get("pipelineId") == pipeline
        ]


@contextmanager
def webhook_receiver(path: str) -> Iterator[WebhookReceiver]:
    """``with webhook_receiver("/hooks") as rec:`` a receiver on 127.0.0.1 answering 200."""
    port = free_port()
    rec = WebhookReceiver(url=f"http://127.0.0.1:{port}{path}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append((dict(self.headers.items()), body, self.path))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def new_webhook_receiver() -> Callable[[str], AbstractContextManager[WebhookReceiver]]:
    """``with new_webhook_receiver("/hooks") as rec:`` (see ``webhook_receiver``);
    session-scoped, so module-scoped fixtures can use it."""
    return webhook_receiver
