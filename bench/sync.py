"""Sync benchmark: edgeloop's S3 sync against `aws s3 sync`, rclone, a bare concurrent GET
of every object and a bare listing.

10,000 objects of 1 KB on the local S3-compatible server (moto, a real HTTP
server process). Measured side by side in one run:

- full sync: ``edgeloop.ingest.sync.sync_source`` into an empty catalog + blob
  store, vs ``aws s3 sync`` of the same prefix to an empty local folder (awscli
  from PyPI, its default settings), vs ``rclone copy`` (Debian's rclone, 16
  transfers, ``force_path_style = true``), vs the physical floor: a bare
  concurrent GET of every object with boto3 through the same client (the source's
  hook: same config, same connection pool) and as many threads as the sync's
  ``concurrency`` (16), no hashing, no files, no catalog;
- no-change re-sync: ``sync_source`` again (everything unchanged), vs a bare
  paginated ListObjectsV2 of the prefix with boto3 (best of three each).

The full syncs run in ``--rounds`` rounds (2), each into empty destinations (the sync
into a new catalog and blob store), the order reversed every other round so that no
tool always runs first on a server just filled; the best round of each counts.

The last four lines are machine-readable (our time divided by theirs; lower is
better): ``sync_vs_awscli=R``, ``resync_vs_listing=R``, ``sync_vs_rclone=R``,
``sync_vs_bare_get=R``. Targets: sync_vs_awscli <= 1.0, resync_vs_listing <= 1.5
(issue 2), sync_vs_rclone <= 1.0, sync_vs_bare_get <= 1.15 (issue 7). Without
rclone (``apt-get install rclone``) its line says so and ``sync_vs_rclone=n/a``.

Options: ``--objects N`` (or ``EDGELOOP_BENCH_OBJECTS``), ``--size BYTES``,
``--rounds N``, ``--keep`` (keep the temp folder).
"""

from __future__ import annotations

import argparse
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
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}label-{i % 10}/{i:06d}.npy", Body=body)

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(put, range(n)))


def bare_get(client, keys: list[str], workers: int = 16) -> int:
    """GET every object concurrently and drop the bytes: the floor of any full sync."""

    def get(key: str) -> int:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        n = 0
        for chunk in body.iter_chunks(1 << 20):
            n += len(chunk)
        return n

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(1 for _ in pool.map(get, keys))


def rclone_copy(endpoint: str, dest: Path, work: Path) -> float | None:
    """Seconds for `rclone copy` of the prefix (16 transfers), or None without rclone."""
    exe = shutil.which("rclone")
    if exe is None:
        return None
    conf = work / "rclone.conf"
    conf.write_text(
        "[bench]\ntype = s3\nprovider = Other\naccess_key_id = testing\n"
        f"secret_access_key = testing\nendpoint = {endpoint}\nregion = us-east-1\n"
        "force_path_style = true\n"
    )
    # rclone refuses to start with a CA bundle variable set (AWS_CA_BUNDLE and the like)
    env = {k: v for k, v in os.environ.items() if not k.endswith("CA_BUNDLE")}
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    argv = [exe, "--config", str(conf), "copy", f"bench:{BUCKET}/{PREFIX}", str(dest)]
    t0 = time.perf_counter()
    subprocess.run([*argv, "--transfers", "16", "--checkers", "16", "-q"], env=env, check=True)
    return time.perf_counter() - t0


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
    parser.add_argument(
        "--objects", type=int, default=int(os.environ.get("EDGELOOP_BENCH_OBJECTS", 10_000))
    )
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--rounds", type=int, default=2, help="full-sync rounds (best of them counts)"
    )
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
        # The hook's "credentials retrieved" line (structlog: logging.disable below does
        # not reach it) would interleave with the figures.
        os.environ["AIRFLOW__LOGGING__NAMESPACE_LEVELS"] = "airflow.providers.amazon=WARNING"
        from edgeloop.catalog.store import upgrade
        from edgeloop.settings import get_settings

        upgrade(get_settings().catalog_url)
        from edgeloop.ingest.source import S3Source, SourceSpec
        from edgeloop.ingest.sync import sync_source

        spec = SourceSpec(scheme="s3", bucket=BUCKET, prefix=PREFIX, conn_id=CONN_ID)

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
        _ = S3Source(spec).client  # import boto3/the amazon provider once, outside the timings

        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=PREFIX
            )
            for o in page.get("Contents", ())
        ]
        aws_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

        def ours(r: int) -> float:
            """A full sync into an empty catalog and blob store of its own."""
            os.environ["EDGELOOP_HOME"] = str(work / f"edgeloop-{r}")
            upgrade(get_settings().catalog_url)
            seconds, stats = timed(lambda: sync_source(spec, "bench", run_id=f"bench-full-{r}"))
            if stats["new"] != args.objects or stats["failed"]:
                raise SystemExit(f"error: full sync did not import every object: {stats}")
            return seconds

        def aws(r: int) -> float:
            dest = work / f"awscli-{r}"
            argv = [
                bin_path("aws"), "s3", "sync", f"s3://{BUCKET}/{PREFIX}", str(dest),
                "--endpoint-url", server.endpoint, "--only-show-errors", "--no-progress",
            ]  # fmt: skip
            seconds, _ = timed(lambda: subprocess.run(argv, env=aws_env, check=True))
            copied = sum(1 for p in dest.rglob("*") if p.is_file())
            if copied != args.objects:
                raise SystemExit(f"error: aws s3 sync copied {copied} files")
            return seconds

        def rclone(r: int) -> float | None:
            seconds = rclone_copy(server.endpoint, work / f"rclone-{r}", work)
            copied = sum(1 for p in (work / f"rclone-{r}").rglob("*") if p.is_file())
            if seconds is not None and copied != args.objects:
                raise SystemExit(f"error: rclone copied {copied} files")
            return seconds

        # The same client as the sync (its config: retries, pool size, checksum mode) and
        # the same number of threads: the difference is what the sync adds to each GET.
        bare_client = S3Source(spec).client

        def bare(r: int) -> float:
            seconds, got = timed(lambda: bare_get(bare_client, keys, workers=spec.concurrency))
            if got != args.objects:
                raise SystemExit(f"error: the bare GETs fetched {got} objects")
            return seconds

        # Full syncs, each into an empty destination, in rounds whose order is reversed
        # every other round (no tool always runs first, on a server just filled); the
        # best round of each counts.
        tools = {"ours": ours, "aws": aws, "rclone": rclone, "bare": bare}
        runs: dict[str, list[float]] = {name: [] for name in tools}
        for r in range(args.rounds):
            for name in list(tools) if r % 2 == 0 else list(reversed(tools)):
                seconds = tools[name](r)
                if seconds is not None:
                    runs[name].append(seconds)

        def best(name: str) -> float | None:
            return min(runs[name]) if runs[name] else None

        def rounds(name: str) -> str:
            return "rounds: " + ", ".join(f"{t:.2f}" for t in runs[name])

        ours_full, aws_full, rclone_s, bare_s = (best(n) for n in tools)
        assert ours_full and aws_full and bare_s
        report(
            f"full sync   edgeloop sync_source: {ours_full:8.2f} s  "
            f"({args.objects / ours_full:,.0f} objects/s; {rounds('ours')})"
        )
        report(
            f"full sync   aws s3 sync          : {aws_full:8.2f} s  "
            f"({args.objects / aws_full:,.0f} objects/s; {rounds('aws')})"
        )
        if rclone_s is None:
            report("full sync   rclone copy          :  missing (apt-get install rclone)")
        else:
            report(
                f"full sync   rclone copy          : {rclone_s:8.2f} s  "
                f"({args.objects / rclone_s:,.0f} objects/s; 16 transfers; {rounds('rclone')})"
            )
        report(
            f"full sync   bare boto3 GETs      : {bare_s:8.2f} s  "
            f"({args.objects / bare_s:,.0f} objects/s; {spec.concurrency} threads, the sync's "
            f"client, no hashing, no catalog; {rounds('bare')})"
        )

        # No-change re-sync vs a bare listing (best of three each, interleaved).
        resync_times, listing_times = [], []
        for i in range(3):
            t, again = timed(lambda i=i: sync_source(spec, "bench", run_id=f"bench-re{i}"))
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
            f"re-sync     edgeloop sync_source: {ours_resync:8.2f} s  (no change; best of 3: "
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
        print(f"sync_vs_rclone={ours_full / rclone_s:.2f}" if rclone_s else "sync_vs_rclone=n/a")
        print(f"sync_vs_bare_get={ours_full / bare_s:.2f}")
        return 0
    finally:
        server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
