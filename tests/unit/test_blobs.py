"""The local blob store's small-content path (``BlobStore.put_bytes``)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from edgeloop.storage.blobs import BlobStore, relpath


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_bytes_stores_under_the_hash_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = [b"hello ", b"world"]
    digest = sha(b"hello world")
    assert store.put_bytes(data, digest) == relpath(digest)
    assert store.read_bytes(digest) == b"hello world"
    assert files_under(tmp_path) == [relpath(digest)]  # no .dl-* beside it, none in tmp/
    assert (tmp_path / relpath(digest)).stat().st_mode & 0o777 == 0o600


def test_put_bytes_keeps_a_blob_already_there(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = sha(b"content")
    store.put_bytes([b"content"], digest)
    blob = tmp_path / relpath(digest)
    before = blob.stat()
    assert store.put_bytes([b"content"], digest) == relpath(digest)
    assert blob.stat().st_ino == before.st_ino  # not rewritten


def test_put_bytes_recreates_a_folder_removed_meanwhile(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = sha(b"a")
    store.put_bytes([b"a"], first)
    shutil.rmtree(tmp_path / relpath(first)[:2])  # the store still believes the folder exists
    second = first[:4] + "0" * 60  # same folder, another name
    assert store.put_bytes([b"b"], second) == relpath(second)
    assert (tmp_path / relpath(second)).read_bytes() == b"b"


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    store = BlobStore(tmp_path)
    digest = sha(b"x")

    def full_disk(fd: int, data) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.put_bytes([b"x"], digest)
    monkeypatch.undo()
    assert files_under(tmp_path) == []
