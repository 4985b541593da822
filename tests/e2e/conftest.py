"""A running Airflow for end-to-end tests that need the real thing (what `make up` runs):
api-server, scheduler, dag-processor and triggerer as processes, LocalExecutor, SQLite,
the repo's dags/ and plugins/, pipelines from a folder of the test's.

One per test module (~40 s to start on 2 cores): write every pipeline config a module
needs with ``running_airflow.add_pipeline`` and call ``running_airflow.wait_dags`` —
the dag-processor re-parses the pipelines within ~15 s.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeloop_dev.devenv import (
    admin_password,
    airflow_environ,
    free_port,
    s3_connection_environ,
)
from edgeloop_dev.distributed import DistributedStack, RestClient


@dataclass
class RunningAirflow:
    stack: DistributedStack
    rest: RestClient
    pipelines_dir: Path
    env: dict[str, str]  # the components' environment, plus EDGELOOP_API_* for the CLI

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def edgeloop_home(self) -> Path:
        return Path(self.env["EDGELOOP_HOME"])

    def add_pipeline(self, name: str, config: dict | list | str) -> Path:
        path = self.pipelines_dir / name
        path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
        return path

    def wait_dags(self, *dag_ids: str, timeout: float = 180) -> None:
        self.rest.wait_dags(set(dag_ids), timeout=timeout)

    def logs_tail(self, lines: int = 40) -> str:
        return self.stack.logs_tail(lines)


@pytest.fixture(scope="module")
def running_airflow(
    tmp_path_factory: pytest.TempPathFactory, s3_server
) -> Iterator[RunningAirflow]:
    """Also: the Airflow connection ``edgeloop_test_s3`` points at the session's S3 server."""
    root = tmp_path_factory.mktemp("running-airflow")
    pipelines = root / "pipelines"
    pipelines.mkdir()
    port = free_port()
    home = root / "home"
    env = {
        **os.environ,
        **airflow_environ(
            home, pipelines_dir=pipelines, edgeloop_home=root / "edgeloop", api_port=port
        ),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "false",
        **s3_connection_environ("edgeloop_test_s3", s3_server.endpoint),
    }
    for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
        env.pop(key, None)  # this home's defaults, never the caller's
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    stack = DistributedStack(home=home, env=env, workers=0)
    stack.init()
    env |= {
        "EDGELOOP_API_URL": f"http://127.0.0.1:{port}",
        "EDGELOOP_API_USER": "admin",
        "EDGELOOP_API_PASSWORD": admin_password(home),
    }
    try:
        stack.start()
        yield RunningAirflow(
            stack=stack,
            rest=RestClient(stack.api_url, "admin", admin_password(home)),
            pipelines_dir=pipelines,
            env=env,
        )
    except BaseException:
        print(stack.logs_tail(60))
        raise
    finally:
        stack.stop()
