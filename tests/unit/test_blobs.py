"""The local blob store: its layout and its small-content path (``BlobStore.put_bytes``)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeloop.storage.blobs import LAYOUT_FILE, SWEPT_FILE, BlobStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> list[str]:
    """The store's files but its LAYOUT file."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != LAYOUT_FILE
    )


def test_put_bytes_stores_under_the_hash_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = [b"hello ", b"world"]
    digest = sha(b"hello world")
    assert store.put_bytes(data, digest) == store.relpath(digest)
    assert store.read_bytes(digest) == b"hello world"
    assert files_under(tmp_path) == [store.relpath(digest)]  # no .dl-* beside it, none in tmp/
    assert (tmp_path / store.relpath(digest)).stat().st_mode & 0o777 == 0o600


def test_put_bytes_keeps_a_blob_already_there(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = sha(b"content")
    store.put_bytes([b"content"], digest)
    blob = tmp_path / store.relpath(digest)
    before = blob.stat()
    assert store.put_bytes([b"content"], digest) == store.relpath(digest)
    assert blob.stat().st_ino == before.st_ino  # not rewritten


def test_put_bytes_recreates_a_folder_removed_meanwhile(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = sha(b"a")
    store.put_bytes([b"a"], first)
    shutil.rmtree(tmp_path / store.relpath(first)[:2])  # the store still believes the folder exists
    second = first[:4] + "0" * 60  # same folder, another name
    assert store.put_bytes([b"b"], second) == store.relpath(second)
    assert (tmp_path / store.relpath(second)).read_bytes() == b"b"


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


def test_a_new_store_keeps_a_blob_in_one_of_256_folders(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = sha(b"flat")
    assert store.put_bytes([b"flat"], digest) == f"{digest[:2]}/{digest}"
    assert (tmp_path / "blobs" / LAYOUT_FILE).read_text() == "ab/<sha256>\n"
    assert BlobStore(tmp_path / "blobs").read_bytes(digest) == b"flat"  # reopened: same layout


def test_a_store_made_before_the_layout_file_keeps_its_two_level_folders(tmp_path: Path) -> None:
    old = sha(b"old blob")
    (tmp_path / old[:2] / old[2:4]).mkdir(parents=True)
    (tmp_path / old[:2] / old[2:4] / old).write_bytes(b"old blob")
    (tmp_path / "tmp").mkdir()
    store = BlobStore(tmp_path)
    assert store.read_bytes(old) == b"old blob"
    new = sha(b"new blob")
    assert store.put_bytes([b"new blob"], new) == f"{new[:2]}/{new[2:4]}/{new}"
    assert (tmp_path / LAYOUT_FILE).read_text() == "ab/cd/<sha256>\n"
    assert BlobStore(tmp_path).read_bytes(new) == b"new blob"


def test_an_unknown_layout_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / LAYOUT_FILE).write_text("abc/<sha256>\n")
    with pytest.raises(
        ValueError, match=rf"{LAYOUT_FILE}: unknown blob store layout 'abc/<sha256>'"
    ):
        BlobStore(tmp_path)


CRASH_BEFORE_RENAME = """
import os, sys
from edgeloop.storage.blobs import BlobStore

store = BlobStore(sys.argv[1])
os.replace = lambda *_: os._exit(9)  # killed between writing the temp file and renaming it
store.put_bytes([b"half-done"], sys.argv[2])
"""


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "two-level"])
def test_a_temp_file_left_beside_the_blobs_by_a_crash_is_swept_once_stale(
    tmp_path: Path, nested: bool, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgeloop.storage.blobs")
    if nested:
        (tmp_path / "ab" / "cd").mkdir(parents=True)  # a store from before the LAYOUT file
    store = BlobStore(tmp_path)
    assert store.nested is nested
    kept = sha(b"kept")
    store.put_bytes([b"kept"], kept)
    lost = sha(b"half-done")
    crash = subprocess.run([sys.executable, "-c", CRASH_BEFORE_RENAME, str(tmp_path), lost])
    assert crash.returncode == 9
    folder = (tmp_path / store.relpath(lost)).parent
    (left,) = folder.glob(".dl-*")
    assert left.read_bytes() == b"half-done"

    assert store.remove_stale_temp() == 0  # young: it may be a live write
    hour_ago = time.time() - 3601
    os.utime(left, (hour_ago, hour_ago))
    assert store.remove_stale_temp() == 0  # the blob folders were searched a moment ago
    os.utime(tmp_path / SWEPT_FILE, (hour_ago, hour_ago))
    assert store.remove_stale_temp() == 1
    assert f"removed 1 temp file(s) a killed write left in {tmp_path}" in caplog.text
    assert files_under(tmp_path) == [store.relpath(kept), SWEPT_FILE]
    assert (tmp_path / store.relpath(kept)).read_bytes() == b"kept"
