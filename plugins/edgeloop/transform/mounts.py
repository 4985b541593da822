"""``s3://`` parameter values, mounted: the reference platform mounts buckets into a
block; here a parameter whose value is ``s3://bucket/prefix/`` (a folder) or
``s3://bucket/key`` (one object) is downloaded into the batch's scratch folder and the
block receives the local path. The listing (key, ETag, size) is what the incremental
ledger hashes, so a standalone block re-runs only when a mounted object changed."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from edgeloop.errors import SourceError

log = logging.getLogger(__name__)


def is_mount(value: str) -> bool:
    return value.startswith("s3://") and len(value) > len("s3://")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _client(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()


def list_mount(client: Any, uri: str) -> list[tuple[str, str, int]]:
    """(key, ETag, size) of the objects a mount holds, sorted by key."""
    bucket, key = _split(uri)
    try:
        if key and not key.endswith("/"):
            head = client.head_object(Bucket=bucket, Key=key)
            return [(key, head["ETag"], int(head["ContentLength"]))]
        out: list[tuple[str, str, int]] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            out += [
                (o["Key"], o["ETag"], int(o["Size"]))
                for o in page.get("Contents", ())
                if not o["Key"].endswith("/")
            ]
    except Exception as exc:  # botocore's errors: name the mount
        raise SourceError(f"cannot list the mounted {uri}: {exc}") from exc
    return sorted(out)


def mounts_sha(values: Iterable[tuple[str, str]], conn_id: str) -> str:
    """sha256 over the listings of every mounted parameter ('' when none is mounted)."""
    mounted = [(k, v) for k, v in values if is_mount(v)]
    if not mounted:
        return ""
    client = _client(conn_id)
    digest = hashlib.sha256()
    for name, uri in sorted(mounted):
        digest.update(f"{name}={uri}\n".encode())
        for key, etag, size in list_mount(client, uri):
            digest.update(f"{key}\t{etag}\t{size}\n".encode())
    return digest.hexdigest()


def mount(values: dict[str, str], scratch: Path, conn_id: str) -> dict[str, str]:
    """The parameters with each ``s3://`` value downloaded under ``scratch`` and replaced
    by its local path (a folder for a prefix, a file for an object)."""
    out = dict(values)
    client = None
    for i, (name, uri) in enumerate(sorted(values.items())):
        if not is_mount(uri):
            continue
        client = client or _client(conn_id)
        bucket, key = _split(uri)
        objects = list_mount(client, uri)
        root = scratch / f"mount-{i}"
        if key and not key.endswith("/"):
            dest = root / PurePosixPath(key).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(dest))
            out[name] = str(dest)
            continue
        for obj_key, _etag, _size in objects:
            rel = PurePosixPath(obj_key[len(key) :])
            if ".." in rel.parts or rel.is_absolute():
                raise SourceError(f"s3://{bucket}/{obj_key}: a key that leaves the mount")
            dest = root.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj_key, str(dest))
        root.mkdir(parents=True, exist_ok=True)
        out[name] = str(root)
        log.info("mounted %s (%d object(s)) at %s for --%s", uri, len(objects), root, name)
    return out
