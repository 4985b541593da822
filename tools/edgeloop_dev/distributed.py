"""The distributed topology of docker-compose.yaml, run natively on one machine.

``docker-compose.yaml`` is the source of truth: the environment of its
``x-airflow-common`` block is read here, and only what differs between a container
network and one machine is rewritten — service host names become local addresses
(PostgreSQL and Redis on localhost with fresh databases, a moto S3 server for MinIO,
an aiosmtpd server for Mailpit, the api-server on a free port), container paths become
repository / home paths. Then the same components start as processes: api-server,
scheduler, dag-processor, triggerer and Celery workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from edgeloop.errors import EdgeloopError
from edgeloop_dev.devenv import (
    REPO_ROOT,
    bin_path,
    free_port,
    run_logged,
    tail,
    wait_http,
)

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
CONTAINER_HOME = "/opt/airflow"
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` interpolation."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        got = variables.get(name)
        if got:
            return got
        if op and op.endswith("-"):
            return arg or ""
        if op and op.endswith("?"):
            raise EdgeloopError(f"{name} is required by docker-compose.yaml: {arg}")
        return ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def common_environment(compose: Mapping[str, Any]) -> dict[str, str]:
    """The raw (uninterpolated) environment every Airflow component of the compose file gets."""
    return {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}


@dataclass(frozen=True)
class LocalPeers:
    """Where the compose services are on this machine."""

    postgres: str = "127.0.0.1:5432"  # host:port, trust auth
    postgres_user: str = "postgres"
    metadata_db: str = "airflow"
    catalog_db: str = "edgeloop"
    redis: str = "127.0.0.1:6379"
    redis_db: int = 0
    api_port: int = 8080
    s3_endpoint: str = "http://127.0.0.1:9000"
    smtp: str = "127.0.0.1:1025"


def _rewrite_url(url: str, peers: LocalPeers) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "postgres":
        db = parts.path.lstrip("/")
        db = {"airflow": peers.metadata_db, "edgeloop": peers.catalog_db}.get(db, db)
        return urlunsplit(
            (
                parts.scheme,
                f"{peers.postgres_user}@{peers.postgres}",
                f"/{db}",
                parts.query,
                parts.fragment,
            )
        )
    if host == "redis":
        return urlunsplit((parts.scheme, peers.redis, f"/{peers.redis_db}", "", ""))
    if host == "airflow-apiserver":
        return urlunsplit((parts.scheme, f"127.0.0.1:{peers.api_port}", parts.path, "", ""))
    if host == "localhost" and parts.port == 8080:
        return urlunsplit((parts.scheme, f"localhost:{peers.api_port}", parts.path, "", ""))
    if host == "minio":
        return peers.s3_endpoint
    return url


def _rewrite_connection(value: str, peers: LocalPeers) -> str:
    conn = json.loads(value)
    extra = conn.get("extra", {})
    if "endpoint_url" in extra:
        extra["endpoint_url"] = _rewrite_url(extra["endpoint_url"], peers)
    if conn.get("host") == "mailpit":
        host, _, port = peers.smtp.partition(":")
        conn["host"], conn["port"] = host, int(port)
    return json.dumps(conn)


def volume_map(compose: Mapping[str, Any], home: Path) -> dict[str, Path]:
    """Container path → local path, from the bind mounts of x-airflow-common."""
    out: dict[str, Path] = {}
    for volume in compose["x-airflow-common"]["volumes"]:
        source, _, target = volume.partition(":")
        if source.startswith("./"):
            local = REPO_ROOT / source[2:]
            out[target] = home / source[2:] if source == "./config" else local
        else:  # a named volume: a folder of the home
            out[target] = home / source
    out[f"{CONTAINER_HOME}/edgeloop"] = home / "edgeloop"
    return out


def native_environ(
    compose: Mapping[str, Any],
    peers: LocalPeers,
    *,
    home: Path,
    secrets: Mapping[str, str],
) -> dict[str, str]:
    """The compose file's Airflow environment with local peers and paths."""
    paths = volume_map(compose, home)
    env: dict[str, str] = {}
    for key, raw in common_environment(compose).items():
        value = interpolate(raw, secrets)
        if key.startswith("AIRFLOW_CONN_"):
            value = _rewrite_connection(value, peers)
        elif "://" in value:
            value = _rewrite_url(value, peers)
        for container, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
            if value == container or value.startswith(container + "/"):
                value = str(local) + value[len(container) :]
                break
        env[key] = value
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths[f"{CONTAINER_HOME}/dags"]),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths[f"{CONTAINER_HOME}/plugins"]),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(peers.api_port),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        }
    )
    return env


def make_secrets() -> dict[str, str]:
    import secrets as pysecrets

    from cryptography.fernet import Fernet

    return {
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": pysecrets.token_urlsafe(32),
        "AIRFLOW_API_SECRET_KEY": pysecrets.token_urlsafe(32),
    }


def _reset_databases(peers: LocalPeers, *, create: bool) -> None:
    import psycopg2

    host, _, port = peers.postgres.partition(":")
    admin = psycopg2.connect(
        host=host, port=int(port), user=peers.postgres_user, dbname="postgres", connect_timeout=5
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        for db in (peers.metadata_db, peers.catalog_db):
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            if create:
                cur.execute(f'CREATE DATABASE "{db}"')
    admin.close()


def create_databases(peers: LocalPeers) -> None:
    """Fresh metadata and catalog databases on the local PostgreSQL server."""
    _reset_databases(peers, create=True)


def drop_databases(peers: LocalPeers) -> None:
    _reset_databases(peers, create=False)


@dataclass
class Component:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class DistributedStack:
    """api-server, scheduler, dag-processor, triggerer and N Celery workers as processes."""

    home: Path
    env: dict[str, str]
    workers: int = 2
    worker_concurrency: int = 4
    components: list[Component] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"

    @property
    def log_dir(self) -> Path:
        return self.home / "component-logs"

    def init(self) -> None:
        """What airflow-init does: metadata DB, catalog schema, the admin password."""
        log = self.log_dir / "init.log"
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        _write_password(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
        run_logged([bin_path("airflow"), "db", "migrate"], env=self.env, log_path=log, timeout=600)
        run_logged([bin_path("edgeloop"), "db", "upgrade"], env=self.env, log_path=log)

    def start(self) -> None:
        airflow = bin_path("airflow")
        specs = [
            ("api-server", [airflow, "api-server"]),
            ("scheduler", [airflow, "scheduler"]),
            ("dag-processor", [airflow, "dag-processor"]),
            ("triggerer", [airflow, "triggerer"]),
        ] + [
            (
                f"worker-{i}",
                [
                    airflow,
                    "celery",
                    "worker",
                    "-q",
                    "default",
                    "-c",
                    str(self.worker_concurrency),
                    "--celery-hostname",
                    f"worker{i}-{uuid.uuid4().hex[:6]}@%h",
                ],
            )
            for i in range(1, self.workers + 1)
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in specs:
            self.start_component(Component(name, argv))
        wait_http(f"{self.api_url}/api/v2/monitor/health", timeout=240)

    def start_component(self, comp: Component) -> Component:
        out = open(self.log_dir / f"{comp.name}.log", "ab")  # noqa: SIM115
        comp.proc = subprocess.Popen(
            comp.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.components = [c for c in self.components if c.name != comp.name] + [comp]
        return comp

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one component and everything it started (its process group)."""
        comp = self.component(name)
        if comp.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.proc.pid, sig)
            comp.proc.wait()

    def stop(self) -> None:
        for comp in reversed(self.components):
            if comp.proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for comp in self.components:
            if comp.proc is None:
                continue
            try:
                comp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(comp.proc.pid, signal.SIGKILL)
                comp.proc.wait()
            # whatever the component left in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.proc.pid, signal.SIGKILL)

    def logs_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {c.name} ---\n{tail(self.log_dir / f'{c.name}.log', lines)}"
            for c in self.components
        )


def _write_password(path: Path) -> None:
    import secrets as pysecrets

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        path.write_text(json.dumps({"admin": pysecrets.token_urlsafe(12)}) + "\n")
        path.chmod(0o600)


def admin_login(env: Mapping[str, str]) -> tuple[str, str]:
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    return "admin", json.loads(path.read_text())["admin"]


def smtp_server_argv(peers: LocalPeers) -> list[str]:
    """aiosmtpd as the local stand-in for Mailpit (prints what it receives)."""
    return [sys.executable, "-m", "aiosmtpd", "-n", "-l", peers.smtp]


class RestClient:
    """The Airflow REST API v2 through the official apache-airflow-client (JWT from /auth/token)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url, self.user, self.password = url.rstrip("/"), user, password
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            import requests
            from airflow_client import client

            token = requests.post(
                f"{self.url}/auth/token",
                timeout=30,
                json={"username": self.user, "password": self.password},
            )
            token.raise_for_status()
            config = client.Configuration(host=self.url, access_token=token.json()["access_token"])
            self._api = client.ApiClient(config)
        return self._api

    def wait_dags(self, dag_ids: set[str], timeout: float = 300) -> None:
        """Wait until the dag-processor has serialized every DAG in ``dag_ids``."""
        from airflow_client.client.api.dag_api import DAGApi

        deadline = time.monotonic() + timeout
        while True:
            found = {d.dag_id for d in DAGApi(self._client()).get_dags(limit=1000).dags}
            if dag_ids <= found:
                return
            if time.monotonic() > deadline:
                raise EdgeloopError(
                    f"DAGs not loaded after {timeout:.0f} s: {sorted(dag_ids - found)}"
                )
            time.sleep(2)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        from airflow_client.client.api.dag_run_api import DagRunApi
        from airflow_client.client.models.trigger_dag_run_post_body import (
            TriggerDAGRunPostBody,
        )

        run = DagRunApi(self._client()).trigger_dag_run(
            dag_id, TriggerDAGRunPostBody(logical_date=None, conf=dict(conf or {}))
        )
        return run.dag_run_id

    def state(self, dag_id: str, run_id: str) -> str:
        from airflow_client.client.api.dag_run_api import DagRunApi

        return str(DagRunApi(self._client()).get_dag_run(dag_id, run_id).state.value)

    def wait(self, runs: Mapping[str, str], timeout: float = 900) -> dict[str, str]:
        """Wait for every ``{dag_id: run_id}`` to end; return their final states."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while True:
            for dag_id, run_id in runs.items():
                if states.get(dag_id) not in ("success", "failed"):
                    states[dag_id] = self.state(dag_id, run_id)
            if all(s in ("success", "failed") for s in states.values()):
                return states
            if time.monotonic() > deadline:
                raise EdgeloopError(f"runs still going after {timeout:.0f} s: {states}")
            time.sleep(2)


def local_stack(
    home: Path,
    *,
    s3_endpoint: str,
    pipelines_dir: Path,
    workers: int = 2,
    worker_concurrency: int = 4,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[DistributedStack, LocalPeers]:
    """A migrated (not yet started) stack with fresh databases and its own Redis db."""
    tag = uuid.uuid4().hex[:8]
    peers = LocalPeers(
        metadata_db=f"edgeloop_meta_{tag}",
        catalog_db=f"edgeloop_cat_{tag}",
        redis_db=2 + int(tag, 16) % 14,
        api_port=free_port(),
        s3_endpoint=s3_endpoint,
        smtp=f"127.0.0.1:{free_port()}",
    )
    create_databases(peers)
    env = {
        **os.environ,
        **native_environ(load_compose(), peers, home=home, secrets=make_secrets()),
        "EDGELOOP_PIPELINES_DIR": str(pipelines_dir),
        **(extra_env or {}),
    }
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    stack = DistributedStack(
        home=home, env=env, workers=workers, worker_concurrency=worker_concurrency
    )
    stack.init()
    return stack, peers
