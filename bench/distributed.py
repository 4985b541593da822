"""12 pipelines triggered at once on the distributed stack vs the same 12 one after another.

The stack is docker-compose.yaml's topology as local processes (make up-distributed):
api-server, scheduler, dag-processor, triggerer, two Celery workers; metadata DB and
catalog on the local PostgreSQL, broker on Redis, blobs on a local S3 server. Two sets
of 12 pipelines with the same shape (8 projects of their own + 4 importing into one
shared project) import equal amounts of data; one set runs sequentially, the other
concurrently, in the same run of the same stack.

Last line: ``concurrent_speedup=R`` (sequential wall time / concurrent wall time).
Set BENCH_OBJECTS (objects per pipeline, default 200).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from edgeloop_dev.devenv import S3Server, put_objects
from edgeloop_dev.distributed import RestClient, admin_login, drop_databases, local_stack

N = int(os.environ.get("BENCH_OBJECTS", "200"))
BUCKET = "bench-src"


def _config(pid: str, prefix: str, project: str) -> dict:
    return {
        "id": pid,
        "name": pid,
        "project": project,
        "schedule": None,
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": f"s3://{BUCKET}/{prefix}",
                    "awsConnId": "edgeloop_demo_s3",
                },
            }
        ],
    }


def main() -> int:
    # SIGTERM still stops the stack's processes (they run in sessions of their own).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    server = S3Server(log_path=work / "moto.log").start()
    stack = peers = None
    try:
        client = server.client()
        for bucket in (BUCKET, "edgeloop-blobs"):
            client.create_bucket(Bucket=bucket)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        sets: dict[str, list[str]] = {"seq": [], "conc": []}
        objects: dict[str, bytes] = {}
        for mode in sets:
            for i in range(12):
                pid = f"{mode}{i:02d}"
                project = f"{mode}-shared" if i >= 8 else pid
                for j in range(N):
                    body = hashlib.sha256(f"{mode}-{i}-{j}".encode()).digest() * 32
                    objects[f"{pid}/{'abcd'[j % 4]}/{j}.png"] = body
                (pipelines / f"{pid}.json").write_text(json.dumps(_config(pid, f"{pid}/", project)))
                sets[mode].append(pid)
        put_objects(client, BUCKET, objects)
        stack, peers = local_stack(
            work / "home", s3_endpoint=server.endpoint, pipelines_dir=pipelines
        )
        stack.start()
        rest = RestClient(stack.api_url, *admin_login(stack.env))
        rest.wait_dags(set(sets["seq"] + sets["conc"]))

        t0 = time.monotonic()
        for pid in sets["seq"]:
            state = rest.wait({pid: rest.trigger(pid)})[pid]
            assert state == "success", (pid, state)
        sequential = time.monotonic() - t0

        t0 = time.monotonic()
        runs = {pid: rest.trigger(pid) for pid in sets["conc"]}
        states = rest.wait(runs)
        concurrent = time.monotonic() - t0
        assert set(states.values()) == {"success"}, states

        print(f"objects per pipeline: {N}; 12 pipelines, 2 Celery workers x 4 slots")
        print(f"sequential_s={sequential:.1f}")
        print(f"concurrent_s={concurrent:.1f}")
        print(f"concurrent_speedup={sequential / concurrent:.2f}")
        return 0
    finally:
        if stack is not None:
            stack.stop()
        if peers is not None:
            drop_databases(peers)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
