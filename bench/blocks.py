"""Block-step benchmark: a block over 40 items as a pipeline step (through Airflow) vs the
same block run directly in a loop with the same parallelism.

A small block (operatesOn file: reads its input, works ``--seconds`` — a sleep, so the
shared cores do not skew the comparison — writes one output and an ei-metadata.json) is
run over 40 catalog items:

- as a pipeline step: a one-step pipeline, ``airflow dags test --use-executor`` with an
  ``airflow api-server`` for the task processes (the LocalExecutor runs the step's mapped
  slots side by side, ``transformationParallel`` 4); the step's time is its span in the
  metadata DB, from the start of its first slot to the end of its last (planning,
  materializing from the blob store, running, ingesting the outputs and metadata),
  without Airflow's own start-up;
- directly: ``run_block`` on the same 40 inputs with a pool of 4 threads (no catalog).

The api-server's execution API is warmed up (one request) before the pipeline step runs:
its cold start is Airflow's start-up, which a deployed api-server has long paid.

The last line is machine-readable: ``blocks_dag_vs_direct=R`` (pipeline step time divided
by direct time; target <= 1.3, issue 9). Options: ``--items N``, ``--parallel P``,
``--seconds S`` (the block's work per item), ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from edgeloop_dev.devenv import airflow_environ, bin_path, free_port, run_logged, tail, wait_http

BLOCK = "bench-block"
PARAMETERS = {
    "version": 1,
    "type": "transform",
    "info": {"name": "Bench block", "description": "Works a while per file.", "operatesOn": "file"},
    "parameters": [{"name": "Seconds", "type": "float", "param": "seconds", "value": 1.0}],
}
TRANSFORM = """\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--in-file"); p.add_argument("--out-directory"); p.add_argument("--metadata")
p.add_argument("--seconds", type=float, default=1.0)
a, _ = p.parse_known_args()
data = open(a.in_file, "rb").read()
time.sleep(a.seconds)
name = os.path.basename(a.in_file) + ".len"
open(os.path.join(a.out_directory, name), "w").write(str(len(data)))
json.dump({"version": 1, "action": "add", "metadata": {"ei_check": 1, "bytes": len(data)}},
          open(os.path.join(a.out_directory, "ei-metadata.json"), "w"))
"""


def write_block(root: Path) -> Path:
    block = root / "blocks" / BLOCK
    block.mkdir(parents=True)
    (block / "parameters.json").write_text(json.dumps(PARAMETERS))
    (block / "transform.py").write_text(TRANSFORM)
    (block / "Dockerfile").write_text(
        'FROM python:3.11-slim\nENTRYPOINT ["python3", "-u", "transform.py"]\n'
    )
    return block


def make_items(n: int, inputs: Path) -> list[Path]:
    """n items of dataset 'bench' in the catalog (one CSV each), and the same files."""
    from edgeloop.catalog.store import Catalog
    from edgeloop.storage.blobs import BlobStore
    from edgeloop.transform.outputs import store_file, upsert_item

    catalog, blobs = Catalog.from_settings(), BlobStore.from_settings()
    inputs.mkdir(parents=True)
    paths = []
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, "bench")
        for i in range(n):
            path = inputs / f"item{i:03d}.csv"
            path.write_text("t,x\n" + "\n".join(f"{t},{(t * (i + 7)) % 101}" for t in range(200)))
            upsert_item(conn, ds, path.name, [store_file(blobs, path, path.name)], {})
            paths.append(path)
    return paths


def _airflow_json(env: dict[str, str], *args: str) -> list[dict]:
    """The JSON an ``airflow ... -o json`` command prints (its last line)."""
    out = subprocess.run(
        [bin_path("airflow"), *args, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def step_span(env: dict[str, str], log: Path, dag_id: str) -> float:
    """Seconds from the start of the step's first slot (``run`` instance) to the end of its
    last."""
    run_id = _airflow_json(env, "dags", "list-runs", dag_id)[0]["run_id"]
    states = _airflow_json(env, "tasks", "states-for-dag-run", dag_id, run_id)
    by_task: dict[str, list[dict]] = {}
    for s in states:
        by_task.setdefault(s["task_id"].rsplit(".", 1)[-1], []).append(s)
    failed = [s for s in states if s["state"] != "success"]
    if failed:
        raise SystemExit(f"the pipeline step did not succeed: {failed}\n{tail(log, 40)}")
    slots = by_task["run"]
    start = min(datetime.fromisoformat(s["start_date"]) for s in slots)
    end = max(datetime.fromisoformat(s["end_date"]) for s in slots)
    return (end - start).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-blocks-"))
    api: subprocess.Popen | None = None
    try:
        port = free_port()
        pipelines = root / "pipelines"
        pipelines.mkdir()
        env = {
            **os.environ,
            **airflow_environ(
                root / "airflow", pipelines_dir=pipelines, edgeloop_home=root / "el", api_port=port
            ),
            "EDGELOOP_BLOCKS_PATH": str(root / "blocks"),
            "EDGELOOP_BLOCK_VENVS": str(root / "venvs"),
            "AIRFLOW__CORE__PARALLELISM": str(max(8, args.parallel * 2)),
        }
        for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
            env.pop(key, None)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("EDGELOOP_", "AIRFLOW"))})
        for k in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
            os.environ.pop(k, None)
        log = root / "airflow.log"
        block = write_block(root)
        print(f"Airflow home {root / 'airflow'} (migrating) ...", flush=True)
        run_logged([bin_path("airflow"), "db", "migrate"], env=env, log_path=log, timeout=600)
        run_logged([bin_path("edgeloop"), "db", "upgrade"], env=env, log_path=log, timeout=300)
        inputs = make_items(args.items, root / "inputs")
        params = {"seconds": str(args.seconds)}
        (pipelines / "bench_blocks.json").write_text(
            json.dumps(
                {
                    "id": "bench_blocks",
                    "name": "block step benchmark",
                    "project": "bench",
                    "steps": [
                        {
                            "name": "bench block",
                            "transformationBlockId": BLOCK,
                            "filter": "dataset = 'bench'",
                            "parameters": params,
                            "transformationParallel": args.parallel,
                            "uploadType": "dataset",
                            "outputDatasetName": "bench out",
                        }
                    ],
                }
            )
        )

        from edgeloop.blocks.runner import run_block

        def direct(path: Path) -> None:
            run_block(block, in_file=path, out_directory=root / "direct" / path.stem, params=params)

        direct(inputs[0])  # warm up (the block has no requirements: no venv to build)
        print(f"direct: {args.items} items, {args.parallel} threads ...", flush=True)
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            list(pool.map(direct, inputs))
        direct_s = time.monotonic() - t0
        print(f"  direct loop: {direct_s:.1f} s", flush=True)

        print(
            f"pipeline step: airflow dags test --use-executor (transformationParallel "
            f"{args.parallel}) ...",
            flush=True,
        )
        # the LocalExecutor's task processes talk to the api-server's execution API
        with open(log, "ab") as out:
            api = subprocess.Popen(
                [bin_path("airflow"), "api-server", "-p", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"http://localhost:{port}/api/v2/monitor/health", timeout=120)
        # The execution API answers its first request only after a cold start of several
        # seconds (4.8 s measured here): part of Airflow's start-up, not of the step (a
        # deployed api-server is warm), so it is paid before the clock starts.
        warm = time.monotonic()
        wait_http(f"http://localhost:{port}/execution/health", timeout=120)
        print(f"  execution API warm-up: {time.monotonic() - warm:.1f} s (not counted)")
        t0 = time.monotonic()
        run_logged(
            [bin_path("airflow"), "dags", "test", "--use-executor", "bench_blocks"],
            env=env,
            log_path=log,
            timeout=1800,
        )
        wall = time.monotonic() - t0
        dag_s = step_span(env, log, "bench_blocks")
        print(
            f"  pipeline step (first slot start → last slot end): {dag_s:.1f} s "
            f"({wall:.1f} s with Airflow's start-up)",
            flush=True,
        )
        from edgeloop.catalog.store import Catalog

        made = Catalog.from_settings().list_items("bench out")
        if len(made) != args.items:
            raise SystemExit(f"expected {args.items} output items, got {len(made)}")
        print(f"per item: {args.seconds:g} s of work; {args.items} items checked in 'bench out'")
        print(f"blocks_dag_vs_direct={dag_s / direct_s:.2f}")
        return 0
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                api.kill()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
