"""The sync and label tasks against a real S3-compatible server process (moto_server)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import sqlalchemy as sa

import edgeloop
import edgeloop.ingest.source as source_module
import edgeloop.ingest.sync as sync_module
from edgeloop.catalog.store import Catalog, upgrade
from edgeloop.catalog.tables import items, source_objects
from edgeloop.errors import SourceError
from edgeloop.ingest.label import label_source
from edgeloop.ingest.source import (
    REQUEST_ATTEMPTS,
    STREAM_ATTEMPTS,
    S3Source,
    SourceSpec,
    verify_source,
)
from edgeloop.ingest.sync import sync_source
from edgeloop.storage.blobs import BlobStore

PREFIX = "data/"


@pytest.fixture
def home(edgeloop_home: Path) -> Path:
    return edgeloop_home


@dataclass(frozen=True)
class Import:
    """One import step's arguments, as the operators pass them."""

    spec: SourceSpec
    project: str = "proj"
    strategy: str = "infer-from-folder-name"
    category: str = "split"
    sync_deletions: bool = False


def make_import(bucket: str, conn_id: str, *, sync_deletions: bool = False, **spec) -> Import:
    return Import(
        SourceSpec(scheme="s3", bucket=bucket, prefix=PREFIX, conn_id=conn_id, **spec),
        sync_deletions=sync_deletions,
    )


def put(client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=PREFIX + key, Body=body)


def sync(imp: Import, **kw) -> dict:
    return sync_source(imp.spec, imp.project, sync_deletions=imp.sync_deletions, **kw)


def run(imp: Import, **kw) -> tuple[dict, dict]:
    stats = sync(imp, **kw)
    labels = label_source(imp.spec.uri, imp.project, strategy=imp.strategy, category=imp.category)
    return stats, labels


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
    "README.txt": b"read me",  # skipped: text is not a default type
    "cars/": b"",  # skipped: folder marker
}


def test_full_sync_labels_and_splits_then_resync_changes_nothing(
    home, s3_client, s3_bucket, conn_id
) -> None:
    put(s3_client, s3_bucket, LAYOUT)
    imp = make_import(s3_bucket, conn_id)
    assert verify_source(imp.spec)["first_page_objects"] > 0
    stats, labels = run(imp)
    assert stats == {
        "listed": 12,
        "new": 8,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 1,
        "skipped": 3,
        "failed": 0,
        "deleted": 0,
        "gone": 0,
    }
    assert labels["labeled"] + labels["unlabeled"] == 8 and labels["warnings"] == []
    got = by_name()
    skipped = {"notes/readme.md", "README.txt", "cars/", "cars/copy-of-car-1.jpg"}
    assert set(got) == set(LAYOUT) - skipped
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
    stored = [p for p in blobs.root.rglob("*") if p.is_file() and len(p.name) == 64]
    assert len(stored) == 8  # the duplicate is stored once

    categories = {n: r["category"] for n, r in got.items()}
    stats, labels = run(imp)
    assert stats["new"] == stats["updated"] == stats["duplicates"] == 0
    assert stats["unchanged"] == 9 and stats["skipped"] == 3
    assert labels == {"labeled": 0, "unlabeled": 0, "training": 0, "testing": 0, "warnings": []}
    assert {n: r["category"] for n, r in by_name().items()} == categories


def test_sync_and_label_log_readable_lines(home, s3_client, s3_bucket, conn_id, caplog) -> None:
    put(s3_client, s3_bucket, {f"{c}/{i}.png": f"{c}{i}".encode() for c in "ab" for i in range(3)})
    caplog.set_level(logging.INFO, logger="edgeloop")
    run(make_import(s3_bucket, conn_id))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("edgeloop.ingest")]
    assert not any(line.lstrip().startswith("{") for line in lines)
    text = "\n".join(lines)
    assert f"synced s3://{s3_bucket}/{PREFIX}" in text and "new 6, updated 0" in text
    assert "6 labeled, 0 unlabeled" in text and "  a: 3" in text and "  b: 3" in text


def test_labels_that_look_like_file_ids_warn(home, s3_client, s3_bucket, conn_id, caplog) -> None:
    put(s3_client, s3_bucket, {f"cat_{i:04d}.png": f"cat {i}".encode() for i in range(30)})
    imp = dataclasses.replace(make_import(s3_bucket, conn_id), strategy="infer-from-file-name")
    caplog.set_level(logging.INFO, logger="edgeloop")
    _, labels = run(imp)
    assert labels["labeled"] == 30
    assert len(labels["warnings"]) == 1
    assert "30 of 30 labels hold a single item" in labels["warnings"][0]
    assert "look like file ids" in labels["warnings"][0]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("look like file ids" in r.getMessage() for r in warned)


def test_hostile_keys_give_safe_labels(home, s3_client, s3_bucket, conn_id) -> None:
    hostile = {
        "../escape.png": b"h1",
        "/etc/passwd.png": b"h2",
        "./dot.png": b"h3",
        "tab\tcar /x.png": b"h4",
        " spaced /y.png": b"h5",
        "back\\slash/z.png": b"h6",
        "bell\x07/w.png": b"h7",
    }
    put(s3_client, s3_bucket, hostile)
    run(make_import(s3_bucket, conn_id))
    labels = {r["source_key"][len(PREFIX) :]: r["label"] for r in by_name().values()}
    assert labels == {
        "../escape.png": None,
        "/etc/passwd.png": None,
        "./dot.png": None,
        "tab\tcar /x.png": "tabcar",
        " spaced /y.png": "spaced",
        "back\\slash/z.png": "back_slash",
        "bell\x07/w.png": "bell",
    }


def test_add_change_delete_are_exact(home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {f"a/{i}.png": f"a{i}".encode() for i in range(10)})
    imp = make_import(s3_bucket, conn_id, sync_deletions=True)
    run(imp)
    before = by_name()
    put(
        s3_client,
        s3_bucket,
        {"b/new1.png": b"new1", "b/new2.png": b"new2", "a/3.png": b"changed a3"},
    )
    s3_client.delete_object(Bucket=s3_bucket, Key=PREFIX + "a/7.png")
    stats, labels = run(imp)
    assert stats == {
        "listed": 11,
        "new": 2,
        "updated": 1,
        "unchanged": 8,
        "duplicates": 0,
        "skipped": 0,
        "failed": 0,
        "deleted": 1,
        "gone": 0,
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
    stats, _ = run(imp)
    assert (stats["updated"], stats["new"]) == (1, 0)
    assert by_name()["a/7.png"]["id"] == before["a/7.png"]["id"]

    # A key whose content becomes another item's is a duplicate; its item retires.
    put(s3_client, s3_bucket, {"a/8.png": b"a1"})
    stats, _ = run(imp)
    assert (stats["duplicates"], stats["updated"], stats["new"]) == (1, 0, 0)
    assert "a/8.png" not in by_name() and len(by_name()) == 11


def test_a_changed_object_updates_only_its_own_file_of_the_item(
    home, s3_client, s3_bucket, conn_id
) -> None:
    """A block may have added files to a synced item: a changed source object replaces
    the synced file only."""
    from edgeloop.catalog.store import Catalog
    from edgeloop.catalog.tables import files

    put(s3_client, s3_bucket, {"a/1.png": b"one"})
    imp = make_import(s3_bucket, conn_id)
    run(imp)
    item = by_name()["a/1.png"]
    with Catalog.from_settings().begin() as conn:
        conn.execute(
            files.insert().values(
                item_id=item["id"],
                name="added.csv",
                sha256="0" * 64,
                size=3,
                blob_path="00/00/" + "0" * 64,
            )
        )
    put(s3_client, s3_bucket, {"a/1.png": b"one, changed"})
    assert run(imp)[0]["updated"] == 1
    got = {f["name"]: f["sha256"] for f in by_name()["a/1.png"]["files"]}
    assert got == {"1.png": hashlib.sha256(b"one, changed").hexdigest(), "added.csv": "0" * 64}


def test_deletions_are_ignored_by_default_and_counted_as_gone(
    home, s3_client, s3_bucket, conn_id, caplog
) -> None:
    put(s3_client, s3_bucket, {f"a/{i}.png": str(i).encode() for i in range(6)})
    imp = make_import(s3_bucket, conn_id)
    run(imp)
    for i in range(4):
        s3_client.delete_object(Bucket=s3_bucket, Key=f"{PREFIX}a/{i}.png")
    caplog.set_level(logging.INFO, logger="edgeloop")
    stats, _ = run(imp)
    assert (stats["listed"], stats["deleted"], stats["gone"]) == (2, 0, 4)
    assert len(by_name()) == 6
    assert any(
        "4 item(s) of this source are no longer in it" in r.getMessage() for r in caplog.records
    )


def count_gets(source: S3Source) -> Counter:
    """HTTP GetObject requests sent by this source's client, per key (retries included)."""
    sent: Counter = Counter()

    def before_send(request, **kw):
        if request.method == "GET" and "list-type" not in request.url:
            sent[unquote(urlsplit(request.url).path.split("/", 2)[2])] += 1

    source.client.meta.events.register("before-send.s3.GetObject", before_send)
    return sent


def test_requests_say_they_come_from_edgeloop(home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {"a/1.png": b"one"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    agents: list[str] = []
    source.client.meta.events.register(
        "before-send.s3",
        lambda request, **kw: agents.append(request.headers["User-Agent"].decode()),
    )
    assert sync(imp, source=source)["new"] == 1
    assert len(agents) == 2  # the listing and the GET
    for agent in agents:
        assert agent.startswith(f"edgeloop/{edgeloop.__version__} "), agent
        assert "Airflow/" in agent  # the hook's own part stays


def test_the_listing_starts_with_a_short_page_then_reads_every_page(
    home, s3_client, s3_bucket, conn_id, monkeypatch
) -> None:
    monkeypatch.setattr(source_module, "FIRST_PAGE", 3)
    monkeypatch.setattr(source_module, "PAGE", 5)
    objects = {f"p/{i:02d}.png": f"page {i}".encode() for i in range(12)}
    put(s3_client, s3_bucket, objects)
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    sizes: list[int] = []
    source.client.meta.events.register(
        "provide-client-params.s3.ListObjectsV2",
        lambda params, **kw: sizes.append(params["MaxKeys"]),
    )
    assert sync(imp, source=source)["new"] == 12
    assert sizes == [3, 5, 5]
    assert set(by_name()) == set(objects)


def test_the_listing_stays_a_bounded_number_of_objects_ahead_of_the_downloads(
    home, s3_client, s3_bucket, conn_id, monkeypatch
) -> None:
    """With slow downloads the lister reaches the lookahead, waits until half of it is
    taken, goes on, and never holds more than the lookahead queued."""
    monkeypatch.setattr(sync_module, "LOOKAHEAD", 10)
    monkeypatch.setattr(source_module, "FIRST_PAGE", 7)
    monkeypatch.setattr(source_module, "PAGE", 7)
    objects = {f"q/{i:02d}.png": f"queued {i}".encode() for i in range(60)}
    put(s3_client, s3_bucket, objects)
    imp = make_import(s3_bucket, conn_id, concurrency=2)
    source = S3Source(imp.spec)
    listed, started, ahead = 0, 0, []
    lock = threading.Lock()
    real_list, real_download = source.list, source.download

    def counting_list():
        nonlocal listed
        for obj in real_list():
            with lock:
                listed += 1
                ahead.append(listed - started)
            yield obj

    def slow_download(obj, blobs):
        nonlocal started
        with lock:
            started += 1
        time.sleep(0.01)
        return real_download(obj, blobs)

    monkeypatch.setattr(source, "list", counting_list)
    monkeypatch.setattr(source, "download", slow_download)
    assert sync(imp, source=source)["new"] == 60
    assert set(by_name()) == set(objects)
    # queued (at most the lookahead of 10) + one being listed + one in each thread's hands
    assert max(ahead) <= 10 + 1 + 2, ahead
    assert max(ahead) >= 10  # the lister did get ahead and wait


def test_a_failing_request_is_retried_by_botocore_only(home, s3_client, s3_bucket, conn_id) -> None:
    """Up to 16 GETs per object before (botocore's retries inside a hand-written loop)."""
    from botocore.awsrequest import AWSResponse

    objects = {f"x/{i:03d}.png": f"obj {i}".encode() for i in range(40)}
    put(s3_client, s3_bucket, objects)
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    sent = count_gets(source)
    poisoned = {PREFIX + "x/005.png", PREFIX + "x/031.png"}

    class Raw:
        def stream(self, **kw):
            yield b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"

    def fail(request, **kw):
        key = unquote(urlsplit(request.url).path.split("/", 2)[2])
        if key in poisoned:
            return AWSResponse(request.url, 500, {}, Raw())
        return None

    source.client.meta.events.register_last("before-send.s3.GetObject", fail)
    with pytest.raises(SourceError, match=r"2 object\(s\) of .* could not be fetched") as err:
        sync(imp, source=source)
    for key in poisoned:
        assert f"s3://{s3_bucket}/{key}: InternalError" in str(err.value)
        assert sent[key] == REQUEST_ATTEMPTS
    assert all(n == 1 for key, n in sent.items() if key not in poisoned)
    assert len(by_name()) == 38
    stats, _ = run(imp)
    assert (stats["new"], stats["unchanged"], stats["failed"]) == (2, 38, 0)
    assert len(by_name()) == 40


def test_botocore_checks_a_crc_only_where_the_etag_is_no_md5(
    home, s3_client, s3_bucket, conn_id
) -> None:
    """A single-part object is verified by our own MD5 (no second checksum over the same
    bytes); a multipart one, whose ETag is no MD5, asks botocore to check its CRC."""
    part = os.urandom(5 << 20)
    key = PREFIX + "m/multi.npy"
    up = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=key, ChecksumAlgorithm="CRC32")
    parts = []
    for n, body in ((1, part), (2, b"tail")):
        sent = s3_client.upload_part(
            Bucket=s3_bucket,
            Key=key,
            UploadId=up["UploadId"],
            PartNumber=n,
            Body=body,
            ChecksumAlgorithm="CRC32",
        )
        parts.append({"PartNumber": n, **{k: sent[k] for k in ("ETag", "ChecksumCRC32")}})
    s3_client.complete_multipart_upload(
        Bucket=s3_bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    put(s3_client, s3_bucket, {"m/single.npy": b"single"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    modes: dict[str, bytes | None] = {}

    def before_send(request, **kw):
        path = unquote(urlsplit(request.url).path.split("/", 2)[2])
        modes[path] = request.headers.get("x-amz-checksum-mode")

    source.client.meta.events.register("before-send.s3.GetObject", before_send)
    assert sync(imp, source=source)["new"] == 2
    assert modes == {key: b"ENABLED", PREFIX + "m/single.npy": None}
    got = by_name()
    assert got["m/multi.npy"]["sha256"] == hashlib.sha256(part + b"tail").hexdigest()
    assert got["m/single.npy"]["sha256"] == hashlib.sha256(b"single").hexdigest()


@pytest.mark.parametrize(
    "encryption",
    [{"ServerSideEncryption": "aws:kms"}, {"ServerSideEncryption": "aws:kms:dsse"}, "SSE-C"],
    ids=["sse-kms", "dsse-kms", "sse-c"],
)
def test_an_encrypted_object_whose_etag_is_no_md5_syncs(
    home, s3_client, s3_bucket, conn_id, encryption
) -> None:
    """S3 gives an SSE-KMS or SSE-C object a 32-hex ETag that is not the MD5 of its bytes:
    the GET's encryption headers tell, and the MD5 is not held against it (the size still
    is). moto answers with MD5 ETags, so the listing and GET responses carry what S3 sends."""
    body = b"encrypted at rest"
    put(s3_client, s3_bucket, {"k/enc.npy": body, "k/plain.npy": b"plain"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    not_md5 = hashlib.md5(b"not the content").hexdigest()
    assert not_md5 != hashlib.md5(body).hexdigest()

    def listing(parsed, **kw):
        for obj in parsed.get("Contents", ()):
            if obj["Key"].endswith("enc.npy"):
                obj["ETag"] = f'"{not_md5}"'

    def encrypted(parsed, **kw):
        if parsed.get("ContentLength") == len(body):
            if encryption == "SSE-C":
                parsed["SSECustomerAlgorithm"] = "AES256"
            else:
                parsed.update(encryption)

    source.client.meta.events.register("after-call.s3.ListObjectsV2", listing)
    source.client.meta.events.register("after-call.s3.GetObject", encrypted)
    assert sync(imp, source=source)["new"] == 2
    assert by_name()["k/enc.npy"]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_wrong_md5_etag_still_fails_without_encryption(
    home, s3_client, s3_bucket, conn_id
) -> None:
    put(s3_client, s3_bucket, {"k/plain.npy": b"plain"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    wrong = hashlib.md5(b"other").hexdigest()

    def listing(parsed, **kw):
        for obj in parsed.get("Contents", ()):
            obj["ETag"] = f'"{wrong}"'

    source.client.meta.events.register("after-call.s3.ListObjectsV2", listing)
    with pytest.raises(SourceError, match=f"does not match the listed ETag {wrong}"):
        sync(imp, source=source)
    assert by_name() == {}


def test_a_broken_stream_is_fetched_again_a_bounded_number_of_times(
    home, s3_client, s3_bucket, conn_id
) -> None:
    from botocore.exceptions import ResponseStreamingError

    put(s3_client, s3_bucket, {"a/ok.png": b"fine", "a/broken.png": b"x" * 5000})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    sent = count_gets(source)

    class BreakingBody:
        def __init__(self, body) -> None:
            self.body = body

        def iter_chunks(self, size):
            yield self.body.read(100)
            raise ResponseStreamingError(error="Connection broken: IncompleteRead")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.body.close()

    def break_body(http_response, parsed, model, **kw):
        if parsed.get("ContentLength") == 5000:
            parsed["Body"] = BreakingBody(parsed["Body"])

    source.client.meta.events.register("after-call.s3.GetObject", break_body)
    with pytest.raises(SourceError) as err:
        sync(imp, source=source)
    assert f"s3://{s3_bucket}/{PREFIX}a/broken.png: the download broke" in str(err.value)
    assert sent[PREFIX + "a/broken.png"] == STREAM_ATTEMPTS
    assert sent[PREFIX + "a/ok.png"] == 1
    assert set(by_name()) == {"a/ok.png"}
    assert not list((home / "blobs" / "tmp").iterdir())  # no partial download left


def test_an_object_changed_after_listing_fails_named_after_bounded_gets(
    home, s3_client, s3_bucket, conn_id
) -> None:
    put(s3_client, s3_bucket, {"a/1.png": b"one", "a/2.png": b"two"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    sent = count_gets(source)
    changed: list[str] = []

    def change_first(request, **kw):  # the object is rewritten between listing and download
        if request.url.endswith("a/2.png") and not changed:
            changed.append(request.url)
            s3_client.put_object(Bucket=s3_bucket, Key=PREFIX + "a/2.png", Body=b"longer two")

    source.client.meta.events.register_first("before-send.s3.GetObject", change_first)
    with pytest.raises(SourceError) as err:
        sync(imp, source=source)
    assert f"{PREFIX}a/2.png: got 10 bytes, the listing said 3" in str(err.value)
    assert sent[PREFIX + "a/2.png"] == STREAM_ATTEMPTS
    stats, _ = run(imp)  # the next run sees the new version
    assert (stats["new"], stats["unchanged"]) == (1, 1)


def test_a_key_deleted_after_listing_is_named(home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {"a/1.png": b"one", "a/2.png": b"two"})
    imp = make_import(s3_bucket, conn_id)
    source = S3Source(imp.spec)
    sent = count_gets(source)

    def delete_first(request, **kw):
        if request.url.endswith("a/2.png") and not sent.get("deleted"):
            sent["deleted"] = 1
            s3_client.delete_object(Bucket=s3_bucket, Key=PREFIX + "a/2.png")

    source.client.meta.events.register_first("before-send.s3.GetObject", delete_first)
    with pytest.raises(SourceError) as err:
        sync(imp, source=source)
    assert f"s3://{s3_bucket}/{PREFIX}a/2.png: NoSuchKey" in str(err.value)
    assert sent[PREFIX + "a/2.png"] == 1
    assert set(by_name()) == {"a/1.png"}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB tmpfs (needs root and mount; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("small", [source_module.SMALL, 0], ids=["in-memory", "streamed"])
def test_a_full_disk_names_the_objects_and_stops(
    home, s3_client, s3_bucket, conn_id, tiny_disk, small, monkeypatch
) -> None:
    """Both ways of storing a download: held in memory (up to SMALL) or streamed to a file."""
    monkeypatch.setattr(source_module, "SMALL", small)
    put(s3_client, s3_bucket, {f"a/{i:02d}.png": os.urandom(20_000) for i in range(30)})
    imp = make_import(s3_bucket, conn_id)
    with pytest.raises(SourceError) as err:
        sync(imp, blobs=BlobStore(tiny_disk))
    text = str(err.value)
    assert text.startswith(f"stopped syncing s3://{s3_bucket}/{PREFIX}: no space left")
    assert f"s3://{s3_bucket}/{PREFIX}a/" in text and "[Errno 28]" in text
    rows = by_name()
    assert 0 < len(rows) < 30  # what fit is recorded
    assert not list((tiny_disk / "tmp").iterdir())


def test_a_nul_key_fails_alone_named(home, s3_client, s3_bucket, conn_id) -> None:
    put(s3_client, s3_bucket, {"a/ok.png": b"ok", "a/n\x00ul.png": b"nul", "b/ok.png": b"ok2"})
    imp = make_import(s3_bucket, conn_id)
    with pytest.raises(SourceError) as err:
        sync(imp)
    assert f"s3://{s3_bucket}/{PREFIX}a/n\\x00ul.png: the key holds a NUL" in str(err.value)
    assert set(by_name()) == {"a/ok.png", "b/ok.png"}


STALE_SCRIPT = """
import os, signal, sys
from edgeloop.storage.blobs import BlobStore
path, out = BlobStore(sys.argv[1]).open_temp()
out.write(b"partial")
out.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_stale_partial_downloads_are_removed(home, s3_client, s3_bucket, conn_id) -> None:
    blobs = BlobStore.from_settings()
    subprocess.run([sys.executable, "-c", STALE_SCRIPT, str(blobs.root)], check=False)
    (stale,) = blobs.tmp.glob("dl-*")
    live_path, live = blobs.open_temp()  # a download of a running sync: locked
    young = blobs.tmp / "dl-young"
    young.write_bytes(b"just created")
    old = time.time() - 3600
    for path in (stale, live_path):
        os.utime(path, (old, old))
    put(s3_client, s3_bucket, {"a/1.png": b"one"})
    try:
        assert sync(make_import(s3_bucket, conn_id))["new"] == 1
        assert not stale.exists()
        assert live_path.exists() and young.exists()
    finally:
        live.close()


KILL_SCRIPT = """
import sys, time
import edgeloop.ingest.sync as sync
from edgeloop.ingest.source import S3Source, SourceSpec
sync.BATCH = 5
spec = SourceSpec(scheme="s3", bucket=sys.argv[1], prefix=sys.argv[2], conn_id=sys.argv[3],
                  concurrency=2)
source = S3Source(spec)
real = source.client.get_object
def slow(**kw):
    time.sleep(0.05)
    return real(**kw)
source.client.get_object = slow
sync.sync_source(spec, "proj", source=source)
"""


def test_killed_sync_resumes_without_loss_or_duplicates(
    home, s3_client, s3_bucket, conn_id
) -> None:
    objects = {f"k/{i:03d}.png": f"kill {i}".encode() for i in range(120)}
    put(s3_client, s3_bucket, objects)
    imp = make_import(s3_bucket, conn_id)
    catalog = Catalog.from_settings()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, s3_bucket, PREFIX, conn_id], env=os.environ.copy()
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
    stats, _ = run(imp)
    assert stats["new"] + stats["unchanged"] == 120 and stats["failed"] == 0
    got = by_name()
    assert len(got) == 120
    assert {r["sha256"] for r in got.values()} == {
        hashlib.sha256(b).hexdigest() for b in objects.values()
    }
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(source_objects)).scalar() == 120


def test_verify_source_names_bucket_prefix_connection_and_code(home, s3_bucket, conn_id) -> None:
    imp = make_import("no-such-bucket-here", conn_id)
    with pytest.raises(SourceError) as err:
        verify_source(imp.spec)
    text = str(err.value)
    for part in ("no-such-bucket-here", PREFIX, conn_id, "NoSuchBucket"):
        assert part in text


@pytest.fixture
def fernet_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from airflow.sdk.crypto import get_fernet
    from cryptography.fernet import Fernet

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    get_fernet.cache_clear()
    yield
    get_fernet.cache_clear()


def test_inline_encrypted_secret_works_without_a_connection_and_never_leaks(
    home, s3_server, s3_client, s3_bucket, fernet_key, caplog
) -> None:
    from edgeloop.secrets import encrypt_secret

    secret = "s3cr3t-" + uuid.uuid4().hex
    token = encrypt_secret(secret)
    put(s3_client, s3_bucket, {"a/1.png": b"one"})
    imp = make_import(
        s3_bucket,
        "no-such-connection",
        access_key="AKIATEST",
        secret_key_encrypted=token,
        endpoint=s3_server.endpoint,
    )
    caplog.set_level(logging.DEBUG)
    source = S3Source(imp.spec)
    assert source.hook.conn_config.aws_access_key_id == "AKIATEST"
    stats, _ = run(imp, source=source)
    assert stats["new"] == 1 and secret not in json.dumps(stats)
    assert secret not in repr(imp.spec) and secret not in caplog.text
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_gcs_through_the_xml_api_with_an_endpoint_override(
    home, s3_server, s3_client, s3_bucket, conn_id, fernet_key
) -> None:
    from edgeloop.secrets import encrypt_secret

    put(s3_client, s3_bucket, {"cats/1.png": b"gs one", "dogs/2.png": b"gs two"})
    default = S3Source(SourceSpec(scheme="gs", bucket=s3_bucket, prefix=PREFIX, conn_id=conn_id))
    assert (
        default.hook.conn_config.get_service_endpoint_url("s3") == "https://storage.googleapis.com"
    )
    spec = SourceSpec(
        scheme="gs",
        bucket=s3_bucket,
        prefix=PREFIX,
        endpoint=s3_server.endpoint,
        access_key="GOOGHMACKEY",
        secret_key_encrypted=encrypt_secret("hmac-secret"),
    )
    assert spec.uri == f"gs://{s3_bucket}/{PREFIX}"
    assert verify_source(spec)["source"] == spec.uri
    stats = sync_source(spec, "proj")
    assert (stats["new"], stats["failed"]) == (2, 0)
    label_source(spec.uri, "proj", strategy="infer-from-folder-name", category="split")
    got = by_name()
    assert {r["label"] for r in got.values()} == {"cats", "dogs"}
    assert {r["source"] for r in got.values()} == {spec.uri}
    # A connection works too; the spec's endpoint overrides the connection's.
    via_conn = SourceSpec(
        scheme="gs", bucket=s3_bucket, prefix=PREFIX, conn_id=conn_id, endpoint=s3_server.endpoint
    )
    assert sync_source(via_conn, "proj")["unchanged"] == 2


def test_blobs_under_an_s3_prefix(home, s3_client, s3_bucket, conn_id, monkeypatch) -> None:
    blob_bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=blob_bucket)
    monkeypatch.setenv("EDGELOOP_BLOB_ROOT", f"s3://{blob_bucket}/store")
    monkeypatch.setenv("EDGELOOP_BLOB_CONN_ID", conn_id)
    put(s3_client, s3_bucket, {"a/1.png": b"s3 one", "a/2.png": b"s3 two", "b/3.png": b"s3 one"})
    stats, _ = run(make_import(s3_bucket, conn_id))
    assert (stats["new"], stats["duplicates"]) == (2, 1)
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=blob_bucket)["Contents"])
    digests = sorted(hashlib.sha256(b).hexdigest() for b in (b"s3 one", b"s3 two"))
    assert keys == sorted(f"store/{d[:2]}/{d[2:4]}/{d}" for d in digests)
    blobs = BlobStore.from_settings()
    assert blobs.read_bytes(hashlib.sha256(b"s3 two").hexdigest()) == b"s3 two"
    assert not any((home / "blob-tmp").iterdir())


def test_postgresql_catalog(home, s3_client, s3_bucket, conn_id, monkeypatch, pg_url) -> None:
    monkeypatch.setenv("EDGELOOP_CATALOG_URL", pg_url)
    upgrade(pg_url)
    put(
        s3_client,
        s3_bucket,
        {"a/1.png": b"pg one", "b/2.png": b"pg two", "b/dup.png": b"pg one", "c/n\x00.png": b"n"},
    )
    imp = make_import(s3_bucket, conn_id)
    with pytest.raises(SourceError, match=r"1 object\(s\) .*c/n\\x00.png: the key holds a NUL"):
        sync(imp)
    label_source(imp.spec.uri, "proj", strategy=imp.strategy, category=imp.category)
    with pytest.raises(SourceError, match="NUL"):
        sync(imp)
    catalog = Catalog(pg_url)
    assert catalog.counts("proj")["label"] == {"a": 1, "b": 1}
    assert len(catalog.list_items("proj")) == 2
