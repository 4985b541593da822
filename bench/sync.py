"""Sync benchmark: edgeloop's S3 sync against `aws s3 sync` and a bare listing.

10,000 objects of 1 KB on the local S3-compatible server (moto, a real HTTP
server process). Measured side by side in one run:

- full sync: ``edgeloop.sync.sync_step`` into an empty catalog + blob store, vs
  ``aws s3 sync`` of the same prefix to an empty local folder (awscli from PyPI,
  its default settings);
- no-change re-sync: ``sync_step`` again (everything unchanged), vs a bare
  paginated ListObjectsV2 of the prefix with boto3 (best of three each).

The last two lines are machine-readable: ``sync_vs_awscli=R`` and
``resync_vs_listing=R`` (our time divided by theirs; lower is better).
Targets (issue 2): sync_vs_awscli <= 1.0, resync_vs_listing <= 1.5.

Options: ``--objects N``, ``--size BYTES``, ``--keep`` (keep the temp folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgeloop_dev.devenv import S3Server, airflow_environ, bin_path, s3_connection_environ

BUCKET = "bench"
PREFIX = "objects/"
CONN_ID = "edgeloop_bench_s3"


def upload(client, n: int, size: int) -> None:
    """n distinct objects of `size` bytes in ten label folders, uploaded concurrently."""

    def put(i: int) -> None:
        body = (f"{i:010d}".encode() + os.urandom(size))[:size]
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}label-{i % 10}/{i:06d}.txt", Body=body)

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(put, range(n)))


def bare_listing(client) -> int:
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        count += len(page.get("Contents", ()))
    return count


def timed(func):  # -> (seconds, result)
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    figures: list[str] = []

    def report(line: str) -> None:
        figures.append(line)
        print(line, flush=True)

    work = Path(tempfile.mkdtemp(prefix="edgeloop-bench-sync-"))
    server = S3Server(log_path=work / "moto.log").start()
    try:
        # An isolated Airflow home (for the connection lookup) and edgeloop home.
        os.environ.update(
            airflow_environ(
                work / "airflow", pipelines_dir=work / "pipelines", edgeloop_home=work / "edgeloop"
            )
        )
        for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT"):
            os.environ.pop(key, None)
        os.environ.update(s3_connection_environ(CONN_ID, server.endpoint))
        from edgeloop.catalog.store import upgrade
        from edgeloop.settings import get_settings

        upgrade(get_settings().catalog_url)
        config = work / "pipelines" / "bench.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            json.dumps(
                {
                    "id": "bench",
                    "name": "sync benchmark",
                    "project": "bench",
                    "steps": [
                        {
                            "name": "import",
                            "builtinTransformationBlock": {
                                "type": "s3-to-project",
                                "path": f"s3://{BUCKET}/{PREFIX}",
                                "awsConnId": CONN_ID,
                                "labelStrategy": "infer-from-folder-name",
                            },
                        }
                    ],
                }
            )
        )

        from edgeloop.config import load_pipeline
        from edgeloop.ingest.sync import s3_client, sync_step

        pipeline = load_pipeline(config)
        step = pipeline.steps[0]
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        print(
            f"S3 server: moto at {server.endpoint}; {args.objects} objects of "
            f"{args.size} B under s3://{BUCKET}/{PREFIX}",
            flush=True,
        )
        t0 = time.perf_counter()
        upload(client, args.objects, args.size)
        print(f"setup: uploaded in {time.perf_counter() - t0:.1f} s", flush=True)
        # Task logs (one line per sync) would interleave with the figures: keep warnings only.
        logging.disable(logging.INFO)
        s3_client(step)  # import boto3/the amazon provider once, outside the timings

        # Full sync: ours, then aws s3 sync, each into empty destinations.
        t0 = time.perf_counter()
        stats = sync_step(pipeline, step, run_id="bench-full")
        ours_full = time.perf_counter() - t0
        if stats["new"] != args.objects or stats["failed"]:
            print(f"error: full sync did not import every object: {stats}", file=sys.stderr)
            return 1
        report(
            f"full sync   edgeloop sync_step  : {ours_full:8.2f} s  "
            f"({args.objects / ours_full:,.0f} objects/s; {json.dumps(stats)})"
        )

        dest = work / "awscli"
        aws_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        argv = [
            bin_path("aws"),
            "s3",
            "sync",
            f"s3://{BUCKET}/{PREFIX}",
            str(dest),
            "--endpoint-url",
            server.endpoint,
            "--only-show-errors",
            "--no-progress",
        ]
        t0 = time.perf_counter()
        subprocess.run(argv, env=aws_env, check=True)
        aws_full = time.perf_counter() - t0
        copied = sum(1 for p in dest.rglob("*") if p.is_file())
        if copied != args.objects:
            print(f"error: aws s3 sync copied {copied} files", file=sys.stderr)
            return 1
        report(
            f"full sync   aws s3 sync          : {aws_full:8.2f} s  "
            f"({args.objects / aws_full:,.0f} objects/s)"
        )

        # No-change re-sync vs a bare listing (best of three each, interleaved).
        resync_times, listing_times = [], []
        for i in range(3):
            t, again = timed(lambda i=i: sync_step(pipeline, step, run_id=f"bench-re{i}"))
            if again["unchanged"] != args.objects or again["new"] or again["updated"]:
                print(f"error: the re-sync changed something: {again}", file=sys.stderr)
                return 1
            resync_times.append(t)
            t, count = timed(lambda: bare_listing(client))
            if count != args.objects:
                print(f"error: the listing saw {count} objects", file=sys.stderr)
                return 1
            listing_times.append(t)
        ours_resync, listing = min(resync_times), min(listing_times)
        report(
            f"re-sync     edgeloop sync_step  : {ours_resync:8.2f} s  (no change; best of 3: "
            + ", ".join(f"{t:.2f}" for t in resync_times)
            + ")"
        )
        report(
            f"listing     boto3 ListObjectsV2 : {listing:8.2f} s  (best of 3: "
            + ", ".join(f"{t:.2f}" for t in listing_times)
            + ")"
        )
        # Airflow's structured task logging writes to stdout on its own terms: repeat the
        # figures in one block at the end, the ratios last.
        print("\n".join(["", "results:", *figures]))
        print(f"sync_vs_awscli={ours_full / aws_full:.2f}")
        print(f"resync_vs_listing={ours_resync / listing:.2f}")
        return 0
    finally:
        server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
