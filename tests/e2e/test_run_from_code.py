"""Run a pipeline from code against a running Airflow (api-server, scheduler, dag-processor,
triggerer; LocalExecutor): `edgeloop run --wait` (exit 0 / 1, each task's end, the summary),
the curl, Python and Node.js samples each trigger a run, and `edgeloop stop` ends a long run
while `notify` still reports it to the webhook with `success: false`."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from edgeloop.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from edgeloop_dev.devenv import bin_path, put_objects

pytestmark = pytest.mark.slow

SECRET = f"whsec-{uuid.uuid4().hex[:8]}"
LONG_OBJECTS = 6000  # CSVs (a default type: each is fetched), one at a time: a sync to stop


@pytest.fixture(scope="module")
def receiver(new_webhook_receiver):  # -> conftest.WebhookReceiver
    with new_webhook_receiver("/hooks") as rec:
        yield rec


def _pipeline(pid: str, path: str, receiver, **block) -> dict:
    return {
        "id": pid,
        "name": f"Run from code {pid}",
        "schedule": None,
        "retries": 0,
        "notificationWebhook": receiver.url,
        "webhookConnId": "rfc_webhook",
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": path,
                    "awsConnId": "edgeloop_test_s3",
                    **block,
                },
            }
        ],
    }


@pytest.fixture(scope="module")
def airflow(running_airflow, s3_server, receiver):
    """The running Airflow with three pipelines: quick, failing, long."""
    client = s3_server.client()
    client.create_bucket(Bucket="rfc-quick")
    put_objects(
        client, "rfc-quick", {f"in/{'ab'[i % 2]}/{i}.png": bytes([i]) * 64 for i in range(6)}
    )
    client.create_bucket(Bucket="rfc-long")
    put_objects(
        client, "rfc-long", {f"in/x/{i}.csv": i.to_bytes(4, "big") for i in range(LONG_OBJECTS)}
    )
    running_airflow.add_pipeline("rfc_ok.json", _pipeline("rfc_ok", "s3://rfc-quick/in/", receiver))
    running_airflow.add_pipeline(
        "rfc_fail.json", _pipeline("rfc_fail", "s3://rfc-no-such-bucket/in/", receiver)
    )
    running_airflow.add_pipeline(
        "rfc_long.json", _pipeline("rfc_long", "s3://rfc-long/in/", receiver, concurrency=1)
    )
    _add_webhook_connection(running_airflow)
    running_airflow.wait_dags("rfc_ok", "rfc_fail", "rfc_long")
    return running_airflow


def _add_webhook_connection(running_airflow) -> None:
    """The signing secret as a connection in Airflow's database (the components are
    already running: an AIRFLOW_CONN_* variable would not reach them)."""
    from airflow_client.client.api.connection_api import ConnectionApi
    from airflow_client.client.models.connection_body import ConnectionBody

    from edgeloop.runs.client import api_client
    from edgeloop.settings import get_settings

    with api_client(get_settings(running_airflow.env)) as client:
        ConnectionApi(client).post_connection(
            ConnectionBody(connection_id="rfc_webhook", conn_type="generic", password=SECRET)
        )


def edgeloop(airflow, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [bin_path("edgeloop"), *args],
        env=airflow.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_wait_prints_each_task_and_the_summary(airflow, receiver) -> None:
    proc = edgeloop(
        airflow,
        "run",
        "rfc_ok",
        "--wait",
        "--poll",
        "1",
        "--ignore-last-successful-run",
        "--conf",
        "n=3",
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr + airflow.logs_tail()
    run_id = re.search(r"triggered run (\S+) of rfc_ok", out).group(1)
    from airflow_client.client.api.dag_run_api import DagRunApi

    from edgeloop.runs.client import api_client
    from edgeloop.settings import get_settings

    with api_client(get_settings(airflow.env)) as client:
        conf = DagRunApi(client).get_dag_run("rfc_ok", run_id).conf
    assert conf == {"ignoreLastSuccessfulRun": True, "n": 3}
    for task in ("import.verify_source", "import.sync", "import.label", "summary", "publish"):
        assert re.search(rf"^  {re.escape(task)} +success", out, re.M), (task, out)
    assert re.search(r"^  notify +success", out, re.M), out
    assert f"run {run_id} of rfc_ok: success" in out
    assert "pipeline rfc_ok (project rfc_ok)" in out and "items per label: a 3, b 3" in out
    [(payload, headers, body)] = receiver.of("rfc_ok")
    assert payload["success"] is True and payload["runId"] == run_id and payload["newItems"] == 6
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])

    proc = edgeloop(airflow, "run", "rfc_fail", "--wait", "--poll", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^  import\.verify_source +failed", proc.stdout, re.M), proc.stdout
    assert re.search(r"run \S+ of rfc_fail: failed", proc.stdout)
    [(payload, _, _)] = receiver.of("rfc_fail")
    assert payload["success"] is False and payload["failedTasks"][0] == "import.verify_source"


def test_the_three_samples_each_trigger_a_run(airflow, tmp_path: Path) -> None:
    assert shutil.which("node") and shutil.which("curl")
    run_ids = []
    for lang, suffix, argv in (
        ("curl", "sh", ["bash"]),
        ("python", "py", [shutil.which("python3") or "python3"]),
        ("node", "js", ["node"]),
    ):
        sample = edgeloop(airflow, "snippet", "rfc_ok", "--lang", lang)
        assert sample.returncode == 0, sample.stderr
        assert airflow.env["EDGELOOP_API_PASSWORD"] not in sample.stdout
        script = tmp_path / f"trigger.{suffix}"
        script.write_text(sample.stdout)
        proc = subprocess.run(
            [*argv, str(script)],
            env=airflow.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, (lang, proc.stdout, proc.stderr)
        found = re.search(r"(manual__[^\s\"]+)", proc.stdout)
        assert found, (lang, proc.stdout)
        run_ids.append(found.group(1))
    assert len(set(run_ids)) == 3
    for run_id in run_ids:  # real runs of the pipeline (max_active_runs 1: one after another)
        assert airflow.rest.wait({"rfc_ok": run_id}, timeout=900) == {"rfc_ok": "success"}


def test_stop_ends_a_long_run_and_the_webhook_says_so(airflow, receiver) -> None:
    from edgeloop.runs.client import api_client, task_instances
    from edgeloop.settings import get_settings

    proc = edgeloop(airflow, "run", "rfc_long")
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"triggered run (\S+) of rfc_long", proc.stdout).group(1)
    with api_client(get_settings(airflow.env)) as client:
        deadline = time.monotonic() + 600
        while True:
            states = {
                ti.task_id: str(ti.state.value if ti.state else "")
                for ti in task_instances(client, "rfc_long", run_id)
            }
            if states.get("import.sync") == "running":
                break
            assert states.get("import.sync") not in ("success", "failed"), states
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
    stop = edgeloop(airflow, "stop", "rfc_long")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"stopped run {run_id} of rfc_long: failed task(s) import.sync" in stop.stdout
    assert airflow.rest.wait({"rfc_long": run_id}, timeout=600) == {"rfc_long": "failed"}

    [(payload, headers, body)] = receiver.of("rfc_long")  # notify still reported
    assert payload["success"] is False and payload["runId"] == run_id
    assert payload["failedTasks"][0] == "import.sync"
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    from edgeloop.catalog.store import Catalog

    url = f"sqlite:///{airflow.edgeloop_home / 'catalog.db'}"
    listed = Catalog(url).counts("rfc_long")["label"]
    assert sum(listed.values()) < LONG_OBJECTS  # the sync did not finish
