"""Human approval of a deployment through a running Airflow (scheduler, api-server): the
`approve_deployment` task (Airflow's ApprovalOperator) waits in `awaiting_input`; answering
"Approve" through the REST API publishes the new deployment as the project's current one,
"Reject" keeps the previous one. A second answer is refused (409)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from edgeloop_dev.devenv import bin_path, digit_objects

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROJECT = "approve"
GROUP = "retrain_and_deploy"
APPROVE_TASK = f"{GROUP}.approve_deployment"
CONFIG = {
    "id": PROJECT,
    "name": "retrain, build, approve, publish",
    "project": PROJECT,
    "schedule": None,
    "steps": [
        {
            "name": "Retrain and deploy",
            "builtinTransformationBlock": {
                "type": "project-action",
                "retrainModel": True,
                "buildBinary": "zip",
                "buildBinaryModelType": "int8",
                "requireApproval": True,
            },
        }
    ],
}


class Api:
    """Plain HTTP on the REST API v2 (the hitlDetails answer and task instance states)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        import requests

        self.url, self.http = url.rstrip("/"), requests.Session()
        token = self.http.post(
            f"{self.url}/auth/token", json={"username": user, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def _ti(self, run_id: str, task_id: str) -> str:
        run = quote(run_id, safe="")
        return f"{self.url}/api/v2/dags/{PROJECT}/dagRuns/{run}/taskInstances/{task_id}"

    def state(self, run_id: str, task_id: str) -> str | None:
        r = self.http.get(self._ti(run_id, task_id), timeout=30)
        r.raise_for_status()
        return r.json()["state"]

    def wait_state(self, run_id: str, task_id: str, want: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state(run_id, task_id)
            if state == want:
                return
            assert state not in ("failed", "upstream_failed", "skipped"), (task_id, state)
            time.sleep(3)
        raise AssertionError(f"{task_id} still {state} after {timeout} s")

    def answer(self, run_id: str, option: str):
        return self.http.patch(
            self._ti(run_id, APPROVE_TASK) + "/-1/hitlDetails",
            json={"chosen_options": [option]},
            timeout=30,
        )


@pytest.fixture(scope="module")
def project(running_airflow):
    """The project, trained once (3 epochs) before the pipeline runs."""
    from edgeloop.catalog.store import Catalog, upgrade
    from edgeloop.storage.blobs import BlobStore
    from edgeloop.training.samples import add_objects
    from edgeloop.training.train import train

    home = running_airflow.edgeloop_home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGELOOP_HOME", str(home))
        for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
            mp.delenv(key, raising=False)
        url = f"sqlite:///{home / 'catalog.db'}"
        upgrade(url)
        catalog, blobs = Catalog(url), BlobStore.from_settings()
        add_objects(PROJECT, digit_objects(per_label=12, unlabeled=0), catalog=catalog, blobs=blobs)
        impulse = json.loads((REPO / "include" / "impulses" / "digits.json").read_text())
        impulse["learning"]["epochs"] = 3
        assert train(PROJECT, impulse, catalog=catalog, blobs=blobs)["model"] == 1
    running_airflow.add_pipeline("approve.json", CONFIG)
    running_airflow.wait_dags(PROJECT)
    return catalog


def _deployments(catalog) -> list[tuple[int, int, bool]]:
    from edgeloop.training import registry

    return [
        (d["number"], d["model_number"], d["current"])
        for d in registry.list_deployments(catalog, PROJECT)
    ]


def _summary(running_airflow) -> dict:
    out = subprocess.run(
        [bin_path("edgeloop"), "summary", PROJECT, "--json"],
        env=running_airflow.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def _run_until_awaiting(running_airflow, api: Api) -> str:
    run_id = running_airflow.rest.trigger(PROJECT)
    api.wait_state(run_id, APPROVE_TASK, "awaiting_input")
    # An answer within a second of the pause races the executor's event for the paused
    # process (Airflow 3.3 then marks the re-queued task failed, "state changed
    # externally"); a person never answers that fast: give the scheduler a moment.
    time.sleep(8)
    return run_id


def test_approve_publishes_then_reject_keeps_the_previous_deployment(
    running_airflow, project
) -> None:
    from edgeloop_dev.devenv import admin_password

    api = Api(running_airflow.api_url, "admin", admin_password(running_airflow.stack.home))
    catalog = project

    run_id = _run_until_awaiting(running_airflow, api)
    assert _deployments(catalog) == [(1, 2, False)]  # built, not published yet
    assert api.answer(run_id, "Maybe").status_code == 400
    r = api.answer(run_id, "Approve")
    assert r.status_code == 200, r.text
    assert api.answer(run_id, "Reject").status_code == 409  # one answer only
    states = running_airflow.rest.wait({PROJECT: run_id}, timeout=600)
    assert states == {PROJECT: "success"}, running_airflow.logs_tail()
    assert api.state(run_id, f"{GROUP}.publish_deployment") == "success"
    assert _deployments(catalog) == [(1, 2, True)]
    dep = _summary(running_airflow)["deployment"]
    assert (dep["number"], dep["published"], dep["approval"]) == (1, True, "approved")

    run_id = _run_until_awaiting(running_airflow, api)
    r = api.answer(run_id, "Reject")
    assert r.status_code == 200, r.text
    states = running_airflow.rest.wait({PROJECT: run_id}, timeout=600)
    assert states == {PROJECT: "success"}, running_airflow.logs_tail()
    assert api.state(run_id, f"{GROUP}.publish_deployment") == "skipped"
    assert _deployments(catalog) == [(1, 2, True), (2, 3, False)]  # the previous one stays
    dep = _summary(running_airflow)["deployment"]
    assert (dep["number"], dep["published"]) == (2, False)
    assert dep["approval"].startswith("rejected")
