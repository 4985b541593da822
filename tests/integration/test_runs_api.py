"""`edgeloop run` / `stop` and the three samples against a real `airflow api-server`
started in an isolated home (no scheduler: the runs stay queued, which is all
triggering and stopping need)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeloop_dev.devenv import (
    admin_password,
    airflow_environ,
    bin_path,
    free_port,
    run_logged,
    wait_http,
)

pytestmark = pytest.mark.slow

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="ping", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    EmptyOperator(task_id="work")
"""


def _edgeloop(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [bin_path("edgeloop"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, f"edgeloop {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def test_run_stop_and_samples_through_the_api_server(tmp_path: Path) -> None:
    from airflow_client.client.api.dag_run_api import DagRunApi

    from edgeloop.runs.client import api_client
    from edgeloop.settings import get_settings

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ping.py").write_text(DAG_FILE)
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, **airflow_environ(home, pipelines_dir=tmp_path, api_port=port)}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    log = tmp_path / "airflow.log"
    run_logged([bin_path("airflow"), "db", "migrate"], env=env, log_path=log, timeout=600)
    run_logged([bin_path("airflow"), "dags", "reserialize"], env=env, log_path=log, timeout=600)

    api_url = f"http://127.0.0.1:{port}"
    env |= {
        "EDGELOOP_API_URL": api_url,
        "EDGELOOP_API_USER": "admin",
        "EDGELOOP_API_PASSWORD": admin_password(home),
    }
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [bin_path("airflow"), "api-server", "--port", str(port), "--host", "127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"{api_url}/api/v2/monitor/health", timeout=240)

        # edgeloop run: triggers with the conf, prints the run id and its UI link.
        out = _edgeloop(env, "run", "ping", "--ignore-last-successful-run", "--conf", "n=3").stdout
        run_id = out.split()[2]
        assert "/dags/ping/runs/" in out

        settings = get_settings(env)
        with api_client(settings) as client:
            run = DagRunApi(client).get_dag_run("ping", run_id)
            assert run.conf == {"ignoreLastSuccessfulRun": True, "n": 3}
            assert str(run.state.value) == "queued"

            # edgeloop stop: no task started (no scheduler), so the run is marked failed.
            out = _edgeloop(env, "stop", "ping").stdout
            assert f"stopped run {run_id} of ping" in out
            assert str(DagRunApi(client).get_dag_run("ping", run_id).state.value) == "failed"
            assert _edgeloop(env, "stop", "ping", check=False).returncode == 1  # none left

            # Each sample triggers a run.
            samples = {
                lang: _edgeloop(env, "snippet", "ping", "--lang", lang).stdout
                for lang in ("curl", "python", "node")
            }
            results = {}
            results["curl"] = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", samples["curl"]],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            results["python"] = subprocess.run(
                [bin_path("python"), "-c", samples["python"]],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if shutil.which("node"):
                sample = tmp_path / "sample.mjs"
                sample.write_text(samples["node"])
                results["node"] = subprocess.run(
                    ["node", str(sample)], env=env, capture_output=True, text=True, timeout=60
                )
            for lang, proc in results.items():
                assert proc.returncode == 0, (lang, proc.stdout, proc.stderr)
            assert json.loads(results["curl"].stdout)["dag_id"] == "ping"
            runs = DagRunApi(client).get_dag_runs("ping", limit=100).dag_runs
            assert len(runs) == 1 + len(results)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
