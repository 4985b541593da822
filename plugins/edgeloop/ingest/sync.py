"""Incremental S3 → project sync, and the label task (plain functions).

``sync_step`` lists the source prefix, compares it with the catalog's ledger for
that source (key, ETag, size), downloads only new or changed objects in a
bounded thread pool (streamed to a temp file while hashing, size and MD5
verified), moves them into the blob store and records them in batched
transactions. A crash leaves at most orphan blobs; a re-run finishes the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import files, items, now, source_objects
from edgeloop.config import Pipeline, S3ImportStep
from edgeloop.errors import SourceError
from edgeloop.ingest.labeling import infer_label, split
from edgeloop.storage.blobs import BlobStore

log = logging.getLogger(__name__)

BATCH = 500
SYNC_KEYS = ("listed", "new", "updated", "unchanged", "duplicates", "skipped", "failed", "deleted")
ATTEMPTS = 4
CHUNK = 1 << 20


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class Fetched:
    obj: Listed
    sha256: str
    blob: str


class ChecksumError(SourceError):
    pass


def s3_client(step: S3ImportStep, *, file: str | None = None):
    """A boto3 S3 client for a step: inline encrypted keys, or an Airflow connection.

    ``endpoint`` and ``region`` in the step override the connection's.
    """
    from botocore.config import Config

    config = Config(
        max_pool_connections=step.concurrency + 4,
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
    )
    if step.access_key and step.secret_key_encrypted:
        import boto3

        from edgeloop.secrets import decrypt_secret

        return boto3.session.Session().client(
            "s3",
            endpoint_url=step.endpoint,
            region_name=step.region or "us-east-1",
            aws_access_key_id=step.access_key,
            aws_secret_access_key=decrypt_secret(
                step.secret_key_encrypted, file=file, path="secretKeyEncrypted"
            ),
            config=config,
        )
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=step.aws_conn_id, region_name=step.region, config=config)
    endpoint = step.endpoint or hook.conn_config.get_service_endpoint_url("s3")
    return hook.get_session(region_name=step.region).client(
        "s3",
        endpoint_url=endpoint,
        config=config,
        region_name=step.region or hook.conn_config.region_name or "us-east-1",
    )


def _source_error(step: S3ImportStep, exc: Exception) -> SourceError:
    from botocore.exceptions import ClientError

    via = (
        f"access key {step.access_key!r}" if step.access_key else f"connection '{step.aws_conn_id}'"
    )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        detail = f"{err.get('Code', '?')}: {err.get('Message', '')}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return SourceError(
        f"cannot list {step.uri} (bucket '{step.bucket}', prefix '{step.prefix}', {via}): {detail}"
    )


def verify_source(step: S3ImportStep, *, client=None, file: str | None = None) -> dict[str, Any]:
    """List one page of the source; fail fast with bucket, prefix, connection and error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or s3_client(step, file=file)
    try:
        page = client.list_objects_v2(Bucket=step.bucket, Prefix=step.prefix, MaxKeys=10)
    except (ClientError, BotoCoreError) as exc:
        raise _source_error(step, exc) from exc
    found = page.get("KeyCount", 0)
    log.info("source %s is readable (%s object(s) on the first page)", step.uri, found)
    return {"source": step.uri, "first_page_objects": found}


def list_source(client, step: S3ImportStep) -> Iterator[Listed]:
    from botocore.exceptions import BotoCoreError, ClientError

    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=step.bucket, Prefix=step.prefix):
            for obj in page.get("Contents", ()):
                yield Listed(obj["Key"], obj["ETag"].strip('"'), int(obj["Size"]))
    except (ClientError, BotoCoreError) as exc:
        raise _source_error(step, exc) from exc


def _download(client, step: S3ImportStep, obj: Listed, blobs: BlobStore) -> Fetched:
    """Stream one object to a temp file while hashing; verify; move into the store."""
    from botocore.exceptions import BotoCoreError, ClientError

    for attempt in range(1, ATTEMPTS + 1):
        temp = blobs.temp_file()
        try:
            body = client.get_object(Bucket=step.bucket, Key=obj.key)["Body"]
            sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
            with open(temp, "wb") as out:
                for chunk in body.iter_chunks(CHUNK):
                    sha.update(chunk)
                    md5.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if size != obj.size:
                raise ChecksumError(
                    f"s3://{step.bucket}/{obj.key}: got {size} bytes, listed {obj.size}"
                )
            if "-" not in obj.etag and len(obj.etag) == 32 and md5.hexdigest() != obj.etag:
                raise ChecksumError(
                    f"s3://{step.bucket}/{obj.key}: MD5 {md5.hexdigest()} "
                    f"does not match ETag {obj.etag}"
                )
            digest = sha.hexdigest()
            return Fetched(obj, digest, blobs.put(temp, digest))
        except (ClientError, BotoCoreError, OSError, ChecksumError) as exc:
            temp.unlink(missing_ok=True)
            code = exc.response["Error"].get("Code") if isinstance(exc, ClientError) else ""
            if attempt == ATTEMPTS or code in ("NoSuchKey", "AccessDenied", "403", "404"):
                raise
            delay = min(0.2 * 2**attempt, 5.0)
            log.warning("retrying s3://%s/%s in %.1f s after: %s", step.bucket, obj.key, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _skip(key: str, step: S3ImportStep) -> bool:
    """Folder markers, the prefix itself and file types the project does not take."""
    rel = key[len(step.prefix) :]
    return key.endswith("/") or not rel or os.path.splitext(rel)[1].lower() not in step.file_types


class _Ledger:
    """What the catalog holds for one source, loaded once per sync."""

    def __init__(self, conn: sa.Connection, dataset_id: int, source: str) -> None:
        so = source_objects.c
        self.objects = {
            r.key: r
            for r in conn.execute(
                sa.select(so.key, so.etag, so.size, so.item_id).where(
                    (so.dataset_id == dataset_id) & (so.source == source)
                )
            )
        }
        ic = items.c
        self.items = {
            r.source_key: r
            for r in conn.execute(
                sa.select(ic.id, ic.source_key, ic.sha256, ic.deleted_at).where(
                    (ic.dataset_id == dataset_id) & (ic.source == source)
                )
            )
        }
        self.live_shas = {
            r.sha256: r.id
            for r in conn.execute(
                sa.select(ic.id, ic.sha256).where(
                    (ic.dataset_id == dataset_id) & ic.deleted_at.is_(None)
                )
            )
        }


def _record(
    conn: sa.Connection,
    ledger: _Ledger,
    dataset_id: int,
    step: S3ImportStep,
    batch: list[Fetched],
    stats: dict[str, int],
) -> None:
    """Write one batch of fetched objects in the caller's transaction."""
    ts = now()
    placed: list[tuple[Fetched, int]] = []  # (object, item it maps to)
    new: list[Fetched] = []
    duplicates: list[Fetched] = []
    for f in batch:
        existing = ledger.items.get(f.obj.key)
        if existing is not None:
            if existing.sha256 != f.sha256 or existing.deleted_at is not None:
                conn.execute(
                    items.update()
                    .where(items.c.id == existing.id)
                    .values(
                        sha256=f.sha256,
                        size=f.obj.size,
                        etag=f.obj.etag,
                        updated_at=ts,
                        deleted_at=None,
                        label_pending=True,
                    )
                )
                conn.execute(
                    files.update()
                    .where(files.c.item_id == existing.id)
                    .values(sha256=f.sha256, size=f.obj.size, blob_path=f.blob)
                )
                stats["updated"] += 1
            else:
                stats["unchanged"] += 1
            placed.append((f, existing.id))
        elif f.sha256 in ledger.live_shas:
            duplicates.append(f)
        else:
            ledger.live_shas[f.sha256] = 0  # the id comes with the insert below
            new.append(f)
    if new:
        ids = (
            conn.execute(
                items.insert().returning(items.c.id, sort_by_parameter_order=True),
                [
                    {
                        "dataset_id": dataset_id,
                        "name": f.obj.key[len(step.prefix) :],
                        "label": None,
                        "category": None,
                        "source": step.uri,
                        "source_key": f.obj.key,
                        "etag": f.obj.etag,
                        "sha256": f.sha256,
                        "size": f.obj.size,
                        "metadata": "{}",
                        "label_pending": True,
                        "created_at": ts,
                        "updated_at": ts,
                    }
                    for f in new
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            files.insert(),
            [
                {
                    "item_id": item_id,
                    "name": PurePosixPath(f.obj.key).name,
                    "sha256": f.sha256,
                    "size": f.obj.size,
                    "blob_path": f.blob,
                }
                for f, item_id in zip(new, ids, strict=True)
            ],
        )
        for f, item_id in zip(new, ids, strict=True):
            ledger.live_shas[f.sha256] = item_id
            placed.append((f, item_id))
        stats["new"] += len(new)
    for f in duplicates:
        item_id = ledger.live_shas[f.sha256]
        log.info("duplicate content: s3://%s/%s is item %s", step.bucket, f.obj.key, item_id)
        placed.append((f, item_id))
        stats["duplicates"] += 1
    conn.execute(
        source_objects.delete().where(
            (source_objects.c.dataset_id == dataset_id)
            & (source_objects.c.source == step.uri)
            & source_objects.c.key.in_([f.obj.key for f, _ in placed])
        )
    )
    conn.execute(
        source_objects.insert(),
        [
            {
                "dataset_id": dataset_id,
                "source": step.uri,
                "key": f.obj.key,
                "etag": f.obj.etag,
                "size": f.obj.size,
                "sha256": f.sha256,
                "item_id": item_id,
                "updated_at": ts,
            }
            for f, item_id in placed
        ],
    )


def _mark_deleted(catalog: Catalog, dataset_id: int, step: S3ImportStep, gone: list[str]) -> int:
    ts, deleted = now(), 0
    with catalog.begin() as conn:
        for i in range(0, len(gone), BATCH):
            chunk = gone[i : i + BATCH]
            deleted += conn.execute(
                items.update()
                .where(
                    (items.c.dataset_id == dataset_id)
                    & (items.c.source == step.uri)
                    & items.c.source_key.in_(chunk)
                    & items.c.deleted_at.is_(None)
                )
                .values(deleted_at=ts, updated_at=ts)
            ).rowcount
            conn.execute(
                source_objects.delete().where(
                    (source_objects.c.dataset_id == dataset_id)
                    & (source_objects.c.source == step.uri)
                    & source_objects.c.key.in_(chunk)
                )
            )
    return deleted


def sync_step(
    pipeline: Pipeline,
    step: S3ImportStep,
    *,
    run_id: str = "manual",
    catalog: Catalog | None = None,
    blobs: BlobStore | None = None,
    client=None,
) -> dict[str, int]:
    """Bring the project's dataset in line with the source prefix; return the counts.

    Raises SourceError after committing every object that succeeded when some
    objects could not be fetched; a re-run fetches only what is still missing.
    """
    catalog = catalog or Catalog.from_settings()
    blobs = blobs or BlobStore.from_settings()
    client = client or s3_client(step, file=pipeline.source_file)
    stats = dict.fromkeys(SYNC_KEYS, 0)
    started = time.monotonic()
    with catalog.begin() as conn:
        dataset_id = catalog.dataset_id(conn, pipeline.project)
        ledger = _Ledger(conn, dataset_id, step.uri)

    failures: list[str] = []
    pending: list[Fetched] = []
    fetched = 0

    def flush() -> None:
        if pending:
            with catalog.begin() as conn:
                _record(
                    conn, ledger, dataset_id, step, sorted(pending, key=lambda f: f.obj.key), stats
                )
            pending.clear()

    def collect(finished: set[Future[Fetched]]) -> None:
        nonlocal fetched
        for fut in finished:
            try:
                pending.append(fut.result())
                fetched += 1
            except Exception as exc:
                failures.append(str(exc))
                log.error("failed to fetch from %s: %s", step.uri, exc)
        if len(pending) >= BATCH:
            flush()
            log.info(
                "progress: %s listed, %s fetched, %s failed",
                stats["listed"],
                fetched,
                len(failures),
            )

    seen: set[str] = set()
    window: set[Future[Fetched]] = set()
    # Downloads start while the listing goes on; at most concurrency*4 are in flight.
    with ThreadPoolExecutor(max_workers=step.concurrency, thread_name_prefix="sync") as pool:
        try:
            for obj in list_source(client, step):
                stats["listed"] += 1
                if stats["listed"] % 10_000 == 0:
                    log.info("progress: %s listed, %s fetched", stats["listed"], fetched)
                if _skip(obj.key, step):
                    stats["skipped"] += 1
                    continue
                seen.add(obj.key)
                known = ledger.objects.get(obj.key)
                if known is not None and known.etag == obj.etag and known.size == obj.size:
                    stats["unchanged"] += 1
                    continue
                window.add(pool.submit(_download, client, step, obj, blobs))
                if len(window) >= step.concurrency * 4:
                    finished, window = wait(window, return_when=FIRST_COMPLETED)
                    collect(finished)
        finally:  # a listing error still commits what was fetched
            collect(wait(window)[0])
            flush()

    if step.sync_deletions:
        gone = sorted(set(ledger.objects) - seen)
        if gone:
            stats["deleted"] = _mark_deleted(catalog, dataset_id, step, gone)
    stats["failed"] = len(failures)
    log.info("%s: %s in %.1f s", step.uri, json.dumps(stats), time.monotonic() - started)
    if failures:
        raise SourceError(
            f"{len(failures)} object(s) of {step.uri} could not be fetched "
            f"(the others are stored; re-run to retry): {'; '.join(failures[:5])}"
        )
    return stats


def label_step(
    pipeline: Pipeline, step: S3ImportStep, *, catalog: Catalog | None = None
) -> dict[str, int]:
    """Label new or changed items of one source and place them in training/testing."""
    catalog = catalog or Catalog.from_settings()
    ic = items.c
    with catalog.begin() as conn:
        dataset_id = catalog.dataset_id(conn, pipeline.project)
        todo = conn.execute(
            sa.select(ic.id, ic.name, ic.sha256, ic.category).where(
                (ic.dataset_id == dataset_id)
                & (ic.source == step.uri)
                & ic.label_pending
                & ic.deleted_at.is_(None)
            )
        ).all()
        labels: dict[int, str | None] = {}
        categories: dict[int, str] = {}
        to_split: list[tuple[int, str, str | None]] = []
        for row in todo:
            label, fixed = infer_label(row.name, step.label_strategy)
            labels[row.id] = label
            if fixed:
                categories[row.id] = fixed
            elif row.category:
                categories[row.id] = row.category
            elif step.category == "split":
                to_split.append((row.id, row.sha256, label))
            else:
                categories[row.id] = step.category
        if to_split:
            existing = {
                r.label: (int(r.total), int(r.testing or 0))
                for r in conn.execute(
                    sa.select(
                        ic.label,
                        sa.func.count().label("total"),
                        sa.func.sum(sa.case((ic.category == "testing", 1), else_=0)).label(
                            "testing"
                        ),
                    )
                    .where(
                        (ic.dataset_id == dataset_id)
                        & ic.deleted_at.is_(None)
                        & ic.category.is_not(None)
                    )
                    .group_by(ic.label)
                )
            }
            categories.update(split(to_split, existing))
        if todo:
            conn.execute(
                items.update()
                .where(ic.id == sa.bindparam("item_id"))
                .values(
                    label=sa.bindparam("new_label"),
                    category=sa.bindparam("new_category"),
                    label_pending=False,
                ),
                [
                    {"item_id": i, "new_label": labels[i], "new_category": categories[i]}
                    for i in labels
                ],
            )
    stats = {
        "labeled": sum(1 for v in labels.values() if v is not None),
        "unlabeled": sum(1 for v in labels.values() if v is None),
        "training": sum(1 for v in categories.values() if v == "training"),
        "testing": sum(1 for v in categories.values() if v == "testing"),
    }
    log.info("%s: labeled %s", step.uri, json.dumps(stats))
    return stats
