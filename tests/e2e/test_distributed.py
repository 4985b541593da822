"""The distributed topology (CeleryExecutor, PostgreSQL, Redis, S3 blobs) on this machine.

One stack for the module: api-server, scheduler, dag-processor, triggerer and two Celery
workers started from docker-compose.yaml's settings (tools/edgeloop_dev/distributed.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
from collections.abc import Iterator

import pytest

from edgeloop_dev.distributed import (
    DistributedStack,
    LocalPeers,
    RestClient,
    admin_login,
    drop_databases,
    local_stack,
)

pytestmark = pytest.mark.slow

PROJECTS = [f"proj{i}" for i in range(1, 9)]
SHARED = [f"shared{i}" for i in range(1, 5)]
PER_PROJECT = 24
SHARED_COMMON, SHARED_OWN = 15, 15  # files in every shared prefix, files in only one
BIG = 1200


def _png(tag: str) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(tag.encode()).digest() * 8


def _pipeline(pid: str, bucket: str, prefix: str, project: str, concurrency: int = 8) -> dict:
    return {
        "id": pid,
        "name": f"{pid}: s3://{bucket}/{prefix}",
        "project": project,
        "schedule": None,
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": f"s3://{bucket}/{prefix}",
                    "awsConnId": "edgeloop_demo_s3",
                    "labelStrategy": "infer-from-folder-name",
                    "concurrency": concurrency,
                },
            }
        ],
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, s3_server
) -> Iterator[tuple[DistributedStack, LocalPeers, RestClient, str]]:
    root = tmp_path_factory.mktemp("distributed")
    bucket = "dist-src"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    client.create_bucket(Bucket="edgeloop-blobs")
    objects: dict[str, bytes] = {}
    for p in PROJECTS:
        for i in range(PER_PROJECT):
            objects[f"{p}/{'ab'[i % 2]}/{i}.png"] = _png(f"{p}-{i}")
    for s in SHARED:
        for i in range(SHARED_COMMON):
            objects[f"{s}/c/{i}.png"] = _png(f"common-{i}")
        for i in range(SHARED_OWN):
            objects[f"{s}/o/{i}.png"] = _png(f"{s}-{i}")
    for i in range(BIG):
        objects[f"big/{'xyz'[i % 3]}/{i}.png"] = _png(f"big-{i}")
    from edgeloop_dev.devenv import put_objects

    put_objects(client, bucket, objects)
    pipelines = root / "pipelines"
    pipelines.mkdir()
    for p in PROJECTS:
        (pipelines / f"{p}.json").write_text(json.dumps(_pipeline(p, bucket, f"{p}/", p)))
    for s in SHARED:
        (pipelines / f"{s}.json").write_text(json.dumps(_pipeline(s, bucket, f"{s}/", "shared")))
    # few parallel downloads, so the sync of BIG objects lasts long enough to be killed
    big = _pipeline("big", bucket, "big/", "big", concurrency=2)
    (pipelines / "big.json").write_text(json.dumps(big))
    stack, peers = local_stack(
        root / "home",
        s3_endpoint=s3_server.endpoint,
        pipelines_dir=pipelines,
        # a killed worker's task is noticed after 30 s instead of the default 5 min
        extra_env={"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30"},
    )
    try:
        stack.start()
        rest = RestClient(stack.api_url, *admin_login(stack.env))
        rest.wait_dags({*PROJECTS, *SHARED, "big"})
        yield stack, peers, rest, stack.env["EDGELOOP_CATALOG_URL"]
    except BaseException:
        print(stack.logs_tail(60))
        raise
    finally:
        stack.stop()
        drop_databases(peers)


def _items(url: str, project: str) -> list[dict]:
    from edgeloop.catalog.store import Catalog

    return Catalog(url).list_items(project)


def test_twelve_pipelines_at_once_are_exact(stack) -> None:
    st, _peers, rest, url = stack
    runs = {pid: rest.trigger(pid) for pid in [*PROJECTS, *SHARED]}
    states = rest.wait(runs, timeout=900)
    assert set(states.values()) == {"success"}, (states, st.logs_tail(40))
    for p in PROJECTS:
        items = _items(url, p)
        assert len(items) == PER_PROJECT, p
        assert len({i["sha256"] for i in items}) == PER_PROJECT
    shared = _items(url, "shared")
    hashes = [i["sha256"] for i in shared]
    expected = SHARED_COMMON + SHARED_OWN * len(SHARED)
    assert len(set(hashes)) == expected  # nothing lost
    assert len(hashes) == expected  # nothing duplicated
    expected_hashes = {
        hashlib.sha256(_png(f"common-{i}")).hexdigest() for i in range(SHARED_COMMON)
    }
    expected_hashes |= {
        hashlib.sha256(_png(f"{s}-{i}")).hexdigest() for s in SHARED for i in range(SHARED_OWN)
    }
    assert set(hashes) == expected_hashes


def _sync_tries(st: DistributedStack, run_id: str) -> dict[str, list[int]]:
    """{worker: [try numbers]} of the big pipeline's sync task of this run, from the logs."""
    pattern = re.compile(
        rf"task_id='import\.sync', dag_id='big', run_id='{re.escape(run_id)}', "
        r"try_number=(\d+)"
    )
    out: dict[str, list[int]] = {}
    for comp in st.components:
        if comp.name.startswith("worker-"):
            text = (st.log_dir / f"{comp.name}.log").read_text(errors="replace")
            out[comp.name] = [int(n) for n in pattern.findall(text)]
    return out


def test_a_worker_killed_mid_sync_is_retried_elsewhere_and_exact(stack) -> None:
    st, _peers, rest, url = stack
    run_id = rest.trigger("big")
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next((w for w, tries in _sync_tries(st, run_id).items() if tries), None)
        time.sleep(0.5)
    assert victim, "no worker picked up the sync task"
    time.sleep(3)  # mid-sync: some objects are committed, most are not
    assert rest.state("big", run_id) == "running"
    st.kill(victim, signal.SIGKILL)
    states = rest.wait({"big": run_id}, timeout=900)
    assert states == {"big": "success"}, st.logs_tail(40)
    tries = _sync_tries(st, run_id)
    survivor = next(w for w in tries if w != victim)
    assert tries[victim] == [1]
    assert tries[survivor] and min(tries[survivor]) >= 2, tries  # retried on the other worker
    items = _items(url, "big")
    assert len(items) == BIG
    assert len({i["sha256"] for i in items}) == BIG
