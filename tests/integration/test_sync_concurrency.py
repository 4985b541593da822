"""Concurrent imports into one project: separate processes, a real S3 server, SQLite and
PostgreSQL. Identical content is stored once per project whatever runs at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.catalog.store import Catalog, engine_for
from edgeloop.catalog.tables import datasets, items, source_objects
from edgeloop.ingest.source import SourceSpec
from edgeloop.ingest.sync import sync_source
from edgeloop_dev.devenv import put_objects

WORKERS = 4
REPETITIONS = 5
PER_PREFIX = 50
DISTINCT = 100  # prefix i holds contents (20*i + j) % 100: overlapping between prefixes

# One worker process: for each round, say it is ready, wait for the go file, run the job,
# write its result. All workers of a round start within milliseconds of each other.
WORKER = """
import json, sys, time
from pathlib import Path
from edgeloop.catalog.store import Catalog
from edgeloop.ingest.source import SourceSpec
from edgeloop.ingest.sync import sync_source

work, name, bucket, conn_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rounds = json.loads(sys.argv[5])
catalog = Catalog.from_settings()
for r, job in enumerate(rounds):
    (work / f"ready-{r}-{name}").touch()
    while not (work / f"go-{r}").exists():
        time.sleep(0.002)
    try:
        if job["kind"] == "sync":
            spec = SourceSpec(scheme="s3", bucket=bucket, prefix=job["prefix"], conn_id=conn_id,
                              concurrency=4)
            result = sync_source(spec, job["project"], catalog=catalog)
        else:
            with catalog.begin() as conn:
                result = {"id": catalog.dataset_id(conn, job["project"])}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    (work / f"result-{r}-{name}").write_text(json.dumps(result))
    (work / f"result-{r}-{name}").rename(work / f"out-{r}-{name}.json")
"""


def content(i: int, j: int) -> bytes:
    return f"content {(20 * i + j) % DISTINCT}".encode()


@pytest.fixture
def overlapping(s3_client, s3_bucket) -> str:
    put_objects(
        s3_client,
        s3_bucket,
        {
            f"p{i}/label{j % 3}/{j:03d}.png": content(i, j)
            for i in range(WORKERS)
            for j in range(PER_PREFIX)
        },
    )
    return s3_bucket


def run_rounds(tmp_path: Path, bucket: str, conn_id: str, rounds: list[list[dict]]) -> list:
    """Start one process per job column; run each round's jobs at the same instant."""
    work = tmp_path / f"work-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    n = len(rounds[0])
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(work),
                str(w),
                bucket,
                conn_id,
                json.dumps([r[w] for r in rounds]),
            ],
            env=os.environ.copy(),
        )
        for w in range(n)
    ]
    results = []
    try:
        for r in range(len(rounds)):
            deadline = time.monotonic() + 300
            while len(list(work.glob(f"ready-{r}-*"))) < n:
                assert time.monotonic() < deadline, "workers did not get ready"
                assert all(p.poll() is None for p in procs), "a worker died"
                time.sleep(0.01)
            (work / f"go-{r}").touch()
            while len(list(work.glob(f"out-{r}-*.json"))) < n:
                assert time.monotonic() < deadline, "workers did not finish"
                assert all(p.poll() in (None, 0) for p in procs), "a worker died"
                time.sleep(0.02)
            results.append([json.loads((work / f"out-{r}-{w}.json").read_text()) for w in range(n)])
    finally:
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return results


def snapshot(url: str, project: str) -> dict:
    """What the catalog holds for a project, independent of ids and timestamps."""
    with engine_for(url).connect() as conn:
        ds = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == project)).scalar()
        live = conn.execute(
            sa.select(items.c.sha256, items.c.source_key).where(
                (items.c.dataset_id == ds) & items.c.deleted_at.is_(None)
            )
        ).all()
        ledger = conn.execute(
            sa.select(source_objects.c.source, source_objects.c.key, source_objects.c.sha256).where(
                source_objects.c.dataset_id == ds
            )
        ).all()
    return {
        "live_items": len(live),
        "distinct_live_sha": len({r.sha256 for r in live}),
        "ledger": sorted((r.source, r.key, r.sha256) for r in ledger),
    }


def test_four_processes_importing_overlapping_content_store_each_file_once(
    tmp_path, catalog_url, overlapping, conn_id
) -> None:
    # The reference: the same four imports one after the other.
    for i in range(WORKERS):
        spec = SourceSpec(scheme="s3", bucket=overlapping, prefix=f"p{i}/", conn_id=conn_id)
        sync_source(spec, "sequential")
    reference = snapshot(catalog_url, "sequential")
    assert reference["live_items"] == reference["distinct_live_sha"] == DISTINCT

    rounds = [
        [{"kind": "sync", "prefix": f"p{i}/", "project": f"round{r}"} for i in range(WORKERS)]
        for r in range(REPETITIONS)
    ]
    for r, results in enumerate(run_rounds(tmp_path, overlapping, conn_id, rounds)):
        assert all("error" not in res for res in results), results
        assert sum(res["new"] for res in results) == DISTINCT, (r, results)
        assert sum(res["duplicates"] for res in results) == WORKERS * PER_PREFIX - DISTINCT
        assert all(res["failed"] == 0 for res in results)
        got = snapshot(catalog_url, f"round{r}")
        assert got["live_items"] == got["distinct_live_sha"] == DISTINCT, r
        # Which key holds a content may differ from the sequential run; the ledger (every
        # key → its content) may not.
        assert got["ledger"] == reference["ledger"], r


def test_the_same_import_started_twice_at_once_gives_one_catalog(
    tmp_path, catalog_url, overlapping, conn_id
) -> None:
    rounds = [
        [{"kind": "sync", "prefix": "p0/", "project": f"twice{r}"} for _ in range(2)]
        for r in range(3)
    ]
    spec = SourceSpec(scheme="s3", bucket=overlapping, prefix="p0/", conn_id=conn_id)
    sync_source(spec, "alone")
    alone = snapshot(catalog_url, "alone")
    for r, results in enumerate(run_rounds(tmp_path, overlapping, conn_id, rounds)):
        assert all("error" not in res for res in results), results
        assert sum(res["new"] for res in results) == PER_PREFIX
        assert snapshot(catalog_url, f"twice{r}") == alone
        assert len(Catalog(catalog_url).list_items(f"twice{r}")) == PER_PREFIX


def test_processes_creating_one_new_project_at_once(tmp_path, catalog_url, s3_bucket, conn_id):
    rounds = [[{"kind": "project", "project": f"new{r}"}] * WORKERS for r in range(15)]
    for results in run_rounds(tmp_path, s3_bucket, conn_id, rounds):
        assert all("error" not in res for res in results), results
        assert len({res["id"] for res in results}) == 1
