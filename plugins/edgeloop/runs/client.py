"""The Airflow REST API v2 through the official ``apache-airflow-client``.

A token comes from ``POST /auth/token`` (username and password of
``EDGELOOP_API_USER`` / ``EDGELOOP_API_PASSWORD``) at ``EDGELOOP_API_URL``; a
pipeline's DAG id is the pipeline id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeloop.errors import EdgeloopError

log = logging.getLogger(__name__)

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
ACTIVE_RUN_STATES = ("queued", "running")
RUNNING_TASK_STATES = frozenset(
    {
        "running",
        "queued",
        "scheduled",
        "up_for_retry",
        "up_for_reschedule",
        "deferred",
        "restarting",
    }
)
SUMMARY_TASK_ID = "summary"


class ApiError(EdgeloopError):
    """The Airflow REST API refused or failed a call."""


def get_token(api_url: str, user: str, password: str | None, *, timeout: float = 30.0) -> str:
    """A JWT from ``POST {api_url}/auth/token``."""
    import requests

    if not password:
        raise ApiError(
            "no API password: set EDGELOOP_API_PASSWORD (the admin password `make up` prints)"
        )
    try:
        response = requests.post(
            f"{api_url}/auth/token",
            json={"username": user, "password": password},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise ApiError(f"cannot reach the Airflow API at {api_url}: {type(exc).__name__}") from exc
    if response.status_code not in (200, 201):
        raise ApiError(
            f"POST {api_url}/auth/token as {user!r} answered HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )
    return response.json()["access_token"]


def api_client(settings=None):  # -> airflow_client.client.ApiClient
    """An authenticated client for ``settings`` (default: ``edgeloop.settings``)."""
    import airflow_client.client as ac

    from edgeloop.settings import get_settings

    settings = settings or get_settings()
    token = get_token(settings.api_url, settings.api_user, settings.api_password)
    return ac.ApiClient(ac.Configuration(host=settings.api_url, access_token=token))


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from airflow_client.client.exceptions import ApiException

    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        detail = (exc.body or "")[:300] if isinstance(exc.body, str) else exc.reason
        raise ApiError(f"{what}: HTTP {exc.status}: {detail}") from exc


def trigger_run(client, dag_id: str, conf: dict[str, Any] | None = None):  # -> DAGRunResponse
    """Start a run of ``dag_id`` now (no logical date) with ``conf``."""
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    body = TriggerDAGRunPostBody(logical_date=None, conf=conf or {})
    run = _call(f"triggering {dag_id}", DagRunApi(client).trigger_dag_run, dag_id, body)
    log.info("triggered %s: run %s", dag_id, run.dag_run_id)
    return run


def get_run(client, dag_id: str, run_id: str):  # -> DAGRunResponse
    from airflow_client.client.api.dag_run_api import DagRunApi

    return _call(f"reading run {run_id} of {dag_id}", DagRunApi(client).get_dag_run, dag_id, run_id)


def task_instances(client, dag_id: str, run_id: str) -> list:  # [TaskInstanceResponse]
    from airflow_client.client.api.task_instance_api import TaskInstanceApi

    answer = _call(
        f"listing the tasks of run {run_id}",
        TaskInstanceApi(client).get_task_instances,
        dag_id,
        run_id,
        limit=1000,
    )
    return list(answer.task_instances)


@dataclass(frozen=True)
class TaskEnd:
    task_id: str
    map_index: int
    state: str
    duration: float | None


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def wait_for_run(
    client,
    dag_id: str,
    run_id: str,
    *,
    on_task_end: Callable[[TaskEnd], None] | None = None,
    poll: float = 2.0,
    timeout: float | None = None,
) -> str:
    """Follow a run until it ends; call ``on_task_end`` once per finished task.
    Returns the run's final state (``success`` or ``failed``)."""
    seen: set[tuple[str, int, int]] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = _state(get_run(client, dag_id, run_id).state)
        for ti in task_instances(client, dag_id, run_id):
            ti_state = _state(ti.state)
            key = (ti.task_id, ti.map_index, ti.try_number)
            if ti_state in TERMINAL_TASK_STATES and key not in seen:
                seen.add(key)
                if on_task_end:
                    on_task_end(TaskEnd(ti.task_id, ti.map_index, ti_state, ti.duration))
        if state in TERMINAL_RUN_STATES:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise ApiError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s")
        time.sleep(poll)


def run_summary(client, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The summary task's XCom of a run (None when it did not run)."""
    from airflow_client.client.api.x_com_api import XComApi
    from airflow_client.client.exceptions import ApiException

    try:
        entry = XComApi(client).get_xcom_entry(
            dag_id, SUMMARY_TASK_ID, run_id, "return_value", deserialize=True
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ApiError(f"reading the summary of run {run_id}: HTTP {exc.status}") from exc
    value = entry.actual_instance.value if hasattr(entry, "actual_instance") else entry.value
    return value if isinstance(value, dict) else None


def active_runs(client, dag_id: str) -> list:  # [DAGRunResponse]
    from airflow_client.client.api.dag_run_api import DagRunApi

    answer = _call(
        f"listing the runs of {dag_id}",
        DagRunApi(client).get_dag_runs,
        dag_id,
        state=list(ACTIVE_RUN_STATES),
        limit=100,
    )
    return list(answer.dag_runs)


def stop_run(client, dag_id: str, run_id: str) -> list[str]:
    """Stop a run: its running tasks are marked failed, so the tasks after them do not
    run and the run ends failed, while the ``notify`` task (``all_done``) still
    reports. A run with no running task is marked failed as a whole. Returns the
    task ids marked failed."""
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.api.task_instance_api import TaskInstanceApi
    from airflow_client.client.models.dag_run_patch_body import DAGRunPatchBody
    from airflow_client.client.models.patch_task_instance_body import PatchTaskInstanceBody

    api = TaskInstanceApi(client)
    stopped = []
    for ti in task_instances(client, dag_id, run_id):
        if _state(ti.state) in RUNNING_TASK_STATES and ti.task_id != "notify":
            _call(
                f"failing task {ti.task_id} of run {run_id}",
                api.patch_task_instance,
                dag_id,
                run_id,
                ti.task_id,
                PatchTaskInstanceBody(new_state="failed"),
                map_index=ti.map_index if ti.map_index >= 0 else None,
            )
            stopped.append(ti.task_id)
    if not stopped:
        _call(
            f"failing run {run_id}",
            DagRunApi(client).patch_dag_run,
            dag_id,
            run_id,
            DAGRunPatchBody(state="failed"),
        )
    log.info("stopped run %s of %s (failed: %s)", run_id, dag_id, ", ".join(stopped) or "the run")
    return stopped
