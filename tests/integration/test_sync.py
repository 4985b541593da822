"""The sync and label tasks against a real S3-compatible server process (moto_server)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.catalog.store import Catalog, upgrade
from edgeloop.catalog.tables import items, source_objects
from edgeloop.config import load_pipeline
from edgeloop.errors import SourceError
from edgeloop.ingest.sync import label_step, sync_step, verify_source
from edgeloop.storage.blobs import BlobStore

PREFIX = "data/"


@pytest.fixture
def home(edgeloop_home: Path) -> Path:
    return edgeloop_home


@pytest.fixture
def conn_id(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"s3_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{name.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    return name


def make_pipeline(tmp_path: Path, bucket: str, conn_id: str, **block):
    doc = {
        "id": "p",
        "name": "test",
        "project": "proj",
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": f"s3://{bucket}/{PREFIX}",
                    "awsConnId": conn_id,
                    "category": "split",
                    "labelStrategy": "infer-from-folder-name",
                    **block,
                },
            }
        ],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return load_pipeline(path)


def put(client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=PREFIX + key, Body=body)


def run(pipeline, **kw) -> tuple[dict, dict]:
    step = pipeline.steps[0]
    return sync_step(pipeline, step, **kw), label_step(pipeline, step)


def by_name(project: str = "proj", deleted: bool = False) -> dict[str, dict]:
    return {
        r["name"]: r for r in Catalog.from_settings().list_items(project, include_deleted=deleted)
    }


LAYOUT = {
    "cars/cars.01741.jpg": b"car 1",
    "cars/cars.01743.jpg": b"car 2",
    "unknown/unknown.test_2547.jpg": b"unknown 1",
    "unlabeled/cars.02066.jpg": b"mystery",
    "training/cars/cars.00006.jpg": b"car train",
    "testing/unknown/unknown.test_1012.jpg": b"unknown test",
    "root level.png": b"root file",
    "ünï cödé/spaced name.v1.2.png": b"unicode",
    "cars/copy-of-car-1.jpg": b"car 1",  # duplicate content of cars.01741.jpg
    "notes/readme.md": b"not a data type",  # skipped: type
    "cars/": b"",  # skipped: folder marker
}


def test_full_sync_labels_and_splits_then_resync_changes_nothing(
    tmp_path, home, s3_client, s3_bucket, conn_id
) -> None:
    put(s3_client, s3_bucket, LAYOUT)
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
    assert verify_source(pipeline.steps[0])["first_page_objects"] > 0
    stats, labels = run(pipeline)
    assert stats == {
        "listed": 11,
        "new": 8,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 1,
        "skipped": 2,
        "failed": 0,
        "deleted": 0,
    }
    assert labels["labeled"] + labels["unlabeled"] == 8
    got = by_name()
    assert set(got) == set(LAYOUT) - {"notes/readme.md", "cars/", "cars/copy-of-car-1.jpg"}
    assert got["cars/cars.01741.jpg"]["label"] == "cars"
    assert got["unlabeled/cars.02066.jpg"]["label"] is None
    assert got["root level.png"]["label"] is None
    unicode_key = "ünï cödé/spaced name.v1.2.png"
    assert got[unicode_key]["label"] == "ünï cödé"
    assert got[unicode_key]["source_key"] == PREFIX + unicode_key
    assert (
        got["training/cars/cars.00006.jpg"]["label"],
        got["training/cars/cars.00006.jpg"]["category"],
    ) == ("cars", "training")
    assert got["testing/unknown/unknown.test_1012.jpg"]["category"] == "testing"
    assert all(r["category"] in ("training", "testing") for r in got.values())
    blobs = BlobStore.from_settings()
    for name, row in got.items():
        digest = hashlib.sha256(LAYOUT[name]).hexdigest()
        assert row["sha256"] == digest and row["files"][0]["sha256"] == digest
        assert blobs.read_bytes(digest) == LAYOUT[name]
    stored = [
        p
        for p in blobs.root.rglob("*")
        if p.is_file() and p.relative_to(blobs.root).parts[0] != "tmp"
    ]
    assert len(stored) == 8  # the duplicate is stored once

    categories = {n: r["category"] for n, r in got.items()}
    stats, labels = run(pipeline)
    assert stats["new"] == stats["updated"] == stats["duplicates"] == 0
    assert stats["unchanged"] == 9 and stats["skipped"] == 2
    assert labels == {"labeled": 0, "unlabeled": 0, "training": 0, "testing": 0}
    assert {n: r["category"] for n, r in by_name().items()} == categories


def test_add_change_delete_are_exact(tmp_path, home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {f"a/{i}.png": f"a{i}".encode() for i in range(10)})
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id, syncDeletions=True)
    run(pipeline)
    before = by_name()
    put(
        s3_client,
        s3_bucket,
        {"b/new1.png": b"new1", "b/new2.png": b"new2", "a/3.png": b"changed a3"},
    )
    s3_client.delete_object(Bucket=s3_bucket, Key=PREFIX + "a/7.png")
    stats, labels = run(pipeline)
    assert stats == {
        "listed": 11,
        "new": 2,
        "updated": 1,
        "unchanged": 8,
        "duplicates": 0,
        "skipped": 0,
        "failed": 0,
        "deleted": 1,
    }
    assert labels["labeled"] == 3
    after = by_name()
    assert set(after) == set(before) - {"a/7.png"} | {"b/new1.png", "b/new2.png"}
    changed = after["a/3.png"]
    assert changed["id"] == before["a/3.png"]["id"]  # updated in place, not duplicated
    assert changed["sha256"] == hashlib.sha256(b"changed a3").hexdigest()
    assert changed["category"] == before["a/3.png"]["category"]
    assert BlobStore.from_settings().read_bytes(changed["sha256"]) == b"changed a3"
    assert by_name(deleted=True)["a/7.png"]["deleted_at"] is not None
    assert Catalog.from_settings().counts("proj")["label"] == {"a": 9, "b": 2}

    put(s3_client, s3_bucket, {"a/7.png": b"a7"})  # it comes back
    stats, _ = run(pipeline)
    assert (stats["updated"], stats["new"]) == (1, 0)
    assert by_name()["a/7.png"]["id"] == before["a/7.png"]["id"]


def test_deletions_are_ignored_by_default(tmp_path, home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {"a/1.png": b"1", "a/2.png": b"2"})
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
    run(pipeline)
    s3_client.delete_object(Bucket=s3_bucket, Key=PREFIX + "a/1.png")
    stats, _ = run(pipeline)
    assert stats["deleted"] == 0 and set(by_name()) == {"a/1.png", "a/2.png"}


class FlakyClient:
    """Wraps a real client; get_object of the named keys fails with a connection error."""

    def __init__(self, client, poisoned: set[str]) -> None:
        self._client = client
        self.poisoned = poisoned

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_object(self, **kw):
        from botocore.exceptions import EndpointConnectionError

        if kw["Key"] in self.poisoned:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return self._client.get_object(**kw)


def test_failed_objects_fail_the_task_after_committing_the_rest(
    tmp_path, home, s3_client, s3_bucket, conn_id, monkeypatch
) -> None:
    monkeypatch.setattr("edgeloop.ingest.sync.time.sleep", lambda s: None)
    objects = {f"x/{i:03d}.png": f"obj {i}".encode() for i in range(40)}
    put(s3_client, s3_bucket, objects)
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
    flaky = FlakyClient(s3_client, {PREFIX + "x/005.png", PREFIX + "x/031.png"})
    with pytest.raises(SourceError, match=r"2 object\(s\) of .* could not be fetched") as err:
        sync_step(pipeline, pipeline.steps[0], client=flaky)
    assert "x/005.png" in str(err.value) or "127.0.0.1:1" in str(err.value)
    assert len(by_name()) == 38
    stats, _ = run(pipeline)
    assert (stats["new"], stats["unchanged"], stats["failed"]) == (2, 38, 0)
    assert len(by_name()) == 40


KILL_SCRIPT = """
import sys, time
import edgeloop.ingest.sync as sync
from edgeloop.config import load_pipeline
sync.BATCH = 5
pipeline = load_pipeline(sys.argv[1])
from edgeloop.ingest.sync import s3_client
client = s3_client(pipeline.steps[0])
real = client.get_object
def slow(**kw):
    time.sleep(0.05)
    return real(**kw)
client.get_object = slow
step = pipeline.steps[0].__class__(**{**pipeline.steps[0].__dict__, "concurrency": 2})
sync.sync_step(pipeline, step, client=client)
"""


def test_killed_sync_resumes_without_loss_or_duplicates(
    tmp_path, home, s3_client, s3_bucket, conn_id
) -> None:
    objects = {f"k/{i:03d}.png": f"kill {i}".encode() for i in range(120)}
    put(s3_client, s3_bucket, objects)
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
    catalog = Catalog.from_settings()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, pipeline.source_file], env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with catalog.engine.connect() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(items)).scalar()
            if n >= 10:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert 10 <= n < 120, "the sync must be killed midway"
    stats, _ = run(pipeline)
    assert stats["new"] + stats["unchanged"] == 120 and stats["failed"] == 0
    got = by_name()
    assert len(got) == 120
    assert {r["sha256"] for r in got.values()} == {
        hashlib.sha256(b).hexdigest() for b in objects.values()
    }
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(source_objects)).scalar() == 120


def test_verify_source_names_bucket_prefix_connection_and_code(
    tmp_path, home, s3_bucket, conn_id
) -> None:
    pipeline = make_pipeline(tmp_path, "no-such-bucket-here", conn_id)
    with pytest.raises(SourceError) as err:
        verify_source(pipeline.steps[0])
    text = str(err.value)
    for part in ("no-such-bucket-here", PREFIX, conn_id, "NoSuchBucket"):
        assert part in text


def test_inline_encrypted_secret_works_and_never_lands_in_catalog(
    tmp_path, home, s3_server, s3_client, s3_bucket, monkeypatch
) -> None:
    from cryptography.fernet import Fernet

    from edgeloop.secrets import encrypt_secret

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    from airflow.sdk.crypto import get_fernet

    get_fernet.cache_clear()
    secret = "s3cr3t-" + uuid.uuid4().hex
    token = encrypt_secret(secret)
    put(s3_client, s3_bucket, {"a/1.png": b"one"})
    pipeline = make_pipeline(
        tmp_path,
        s3_bucket,
        "unused",
        accessKey="AKIATEST",
        secretKeyEncrypted=token,
        endpoint=s3_server.endpoint,
    )
    stats, _ = run(pipeline)
    assert stats["new"] == 1 and secret not in json.dumps(stats)
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    get_fernet.cache_clear()


def test_blobs_under_an_s3_prefix(
    tmp_path, home, s3_client, s3_bucket, conn_id, monkeypatch
) -> None:
    blob_bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=blob_bucket)
    monkeypatch.setenv("EDGELOOP_BLOB_ROOT", f"s3://{blob_bucket}/store")
    monkeypatch.setenv("EDGELOOP_BLOB_CONN_ID", conn_id)
    put(s3_client, s3_bucket, {"a/1.png": b"s3 one", "a/2.png": b"s3 two", "b/3.png": b"s3 one"})
    pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
    stats, _ = run(pipeline)
    assert (stats["new"], stats["duplicates"]) == (2, 1)
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=blob_bucket)["Contents"])
    digests = sorted(hashlib.sha256(b).hexdigest() for b in (b"s3 one", b"s3 two"))
    assert keys == sorted(f"store/{d[:2]}/{d[2:4]}/{d}" for d in digests)
    blobs = BlobStore.from_settings()
    assert blobs.read_bytes(hashlib.sha256(b"s3 two").hexdigest()) == b"s3 two"
    assert not any((home / "blob-tmp").iterdir())


def test_postgresql_catalog(tmp_path, home, s3_client, s3_bucket, conn_id, monkeypatch) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {exc}")
    admin.autocommit = True
    db = f"edgeloop_test_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {db}")
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1/{db}"
        monkeypatch.setenv("EDGELOOP_CATALOG_URL", url)
        upgrade(url)
        put(
            s3_client,
            s3_bucket,
            {"a/1.png": b"pg one", "b/2.png": b"pg two", "b/dup.png": b"pg one"},
        )
        pipeline = make_pipeline(tmp_path, s3_bucket, conn_id)
        stats, _ = run(pipeline)
        assert (stats["new"], stats["duplicates"]) == (2, 1)
        assert run(pipeline)[0]["unchanged"] == 3
        assert Catalog(url).counts("proj")["label"] == {"a": 1, "b": 1}
        Catalog(url).engine.dispose()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
