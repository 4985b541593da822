"""Content-addressed blob store: a file is stored once, under its sha256.

The root is a local folder (default) or an S3 prefix (``EDGELOOP_BLOB_ROOT=s3://bucket/prefix``,
credentials from the Airflow connection ``EDGELOOP_BLOB_CONN_ID``, default ``aws_default``).
A blob is written to a temporary file and moved (or uploaded) into place under
its final name only when complete, so a crash leaves at most an orphan temporary
file, never a half-written blob.

Layout: a local store made by this version keeps a blob at ``ab/<sha256>`` (256
folders, as git does); stores made before it keep ``ab/cd/<sha256>``, which made a
folder for almost every blob of a small store. The root's ``LAYOUT`` file says which;
a root without one that already holds blobs is of the older kind. An S3 store keeps
``ab/cd/<sha256>`` (S3 has no folders to make).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import random
import shutil
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

TEMP_PREFIX = "dl-"
# An unlocked temp file younger than this may be one whose writer has not locked it yet.
STALE_AFTER_S = 60.0
SWEEP_EVERY_S = 3600.0  # how often blob folders are searched for hidden temp files


_names = random.Random()  # temp names (O_EXCL: a collision is a retry)
os.register_at_fork(after_in_child=_names.seed)  # a forked task must not repeat its parent


LAYOUT_FILE = "LAYOUT"
SWEPT_FILE = "SWEPT"  # its time: when the blob folders were last searched for temp files
FLAT = "ab/<sha256>"
NESTED = "ab/cd/<sha256>"


class BlobStore:
    """Blobs under a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.nested = self._layout() == NESTED
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._dirs: set[str] = set()  # blob folders known to exist (saves a mkdir per put)

    def _layout(self) -> str:
        """The store's layout, from its ``LAYOUT`` file; written when missing (see the
        module's docstring)."""
        marker = self.root / LAYOUT_FILE
        try:
            layout = marker.read_text().strip()
        except FileNotFoundError:
            older = self.root.is_dir() and any(
                len(p.name) == 2 and p.is_dir() for p in self.root.iterdir()
            )
            layout = NESTED if older else FLAT
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = self._create_temp(str(self.root), f".{LAYOUT_FILE}-")
            with os.fdopen(fd, "w") as out:
                out.write(layout + "\n")
            os.replace(name, marker)
        if layout not in (FLAT, NESTED):
            raise ValueError(
                f"{marker}: unknown blob store layout {layout!r} (expected {FLAT!r} or {NESTED!r})"
            )
        return layout

    def relpath(self, sha256: str) -> str:
        """Where the blob of ``sha256`` lives, relative to the root."""
        if self.nested:
            return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{sha256[:2]}/{sha256}"

    @staticmethod
    def from_settings() -> BlobStore:
        from edgeloop.settings import get_settings

        settings = get_settings()
        if settings.blob_root.startswith("s3://"):
            return S3BlobStore(
                settings.blob_root, settings.home / "blob-tmp", conn_id=settings.blob_conn_id
            )
        return BlobStore(settings.blob_root)

    def open_temp(self) -> tuple[Path, BinaryIO]:
        """A fresh temporary file beside the blobs (same file system: atomic moves),
        open for writing and locked (``flock``) until it is closed.

        The lock tells a live download from one left by a killed process: the kernel
        drops it when its holder dies (see ``remove_stale_temp``). Call ``put`` before
        closing the file.
        """
        fd, name = self._create_temp()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # An explicit buffer size: no isatty() probe of a file we just created.
            return Path(name), os.fdopen(fd, "wb", buffering=1 << 16)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise

    def _create_temp(self, folder: str | None = None, prefix: str = TEMP_PREFIX) -> tuple[int, str]:
        """A new file in ``folder`` (default ``tmp``) as (fd, path), open for writing. What
        tempfile.mkstemp does, minus its per-call getpid and path normalising: the sync
        creates one per object."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        folder = folder or str(self.tmp)
        for _ in range(100):
            name = f"{folder}/{prefix}{_names.getrandbits(64):016x}"
            try:
                return os.open(name, flags, 0o600), name
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free temporary name", folder)

    def remove_stale_temp(self, *, older_than: float = STALE_AFTER_S) -> int:
        """Remove partial downloads of dead processes: temp files in ``tmp`` that nobody
        holds locked, and hidden ones beside the blobs (see ``put_bytes``), older than
        ``older_than`` seconds. Returns how many."""
        removed, cutoff = 0, time.time() - older_than
        for path in self.tmp.glob(TEMP_PREFIX + "*"):
            try:
                with open(path, "rb") as fh:
                    if os.fstat(fh.fileno()).st_mtime > cutoff:
                        continue
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as exc:
                        if exc.errno in (errno.EAGAIN, errno.EACCES):
                            continue  # a live download holds it
                        raise
                    path.unlink(missing_ok=True)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %s stale partial download(s) from %s", removed, self.tmp)
        return removed + self._remove_hidden_temp(cutoff)

    def _remove_hidden_temp(self, cutoff: float) -> int:
        """Hidden temp files that ``put_bytes`` left in blob folders (a crash between
        writing and renaming) and last written before ``cutoff``. They hold no lock, but
        ``put_bytes`` renames its file within milliseconds: an older one has no writer.
        This reads every blob folder (about 2 ms per 1,000 blobs), so it runs at most once
        per ``SWEEP_EVERY_S`` per store (see ``SWEPT_FILE``)."""
        marker = self.root / SWEPT_FILE
        with contextlib.suppress(FileNotFoundError):
            if marker.stat().st_mtime > time.time() - SWEEP_EVERY_S:
                return 0
        marker.touch()
        removed = 0
        pattern = f"*/*/.{TEMP_PREFIX}*" if self.nested else f"*/.{TEMP_PREFIX}*"
        for path in self.root.glob(pattern):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %s temp file(s) a killed write left in %s", removed, self.root)
        return removed

    def put(self, temp: Path, sha256: str) -> str:
        """Move a fully written temp file into place; return the blob's relative path.

        If the blob is already there the temp file is dropped: content is stored once.
        """
        rel = self.relpath(sha256)
        dest = f"{self.root}/{rel}"
        if os.path.exists(dest):
            temp.unlink(missing_ok=True)
            return rel
        folder = self._folder(rel)
        try:
            os.replace(temp, dest)
        except FileNotFoundError:  # the folder was removed meanwhile
            if not os.path.exists(temp):
                raise
            os.makedirs(folder, exist_ok=True)
            os.replace(temp, dest)
        return rel

    def _folder(self, rel: str) -> str:
        """The blob's folder under the root, made on its first use by this store."""
        name = rel.rpartition("/")[0]
        folder = f"{self.root}/{name}"
        if name not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(name)
        return folder

    def put_bytes(self, chunks: list[bytes], sha256: str) -> str:
        """Store content held in memory (a small download); return the blob's relative path.

        Written to a hidden temp file in the blob's own folder and renamed into place at
        once: a rename within one folder, which concurrent writers do not serialise on (a
        rename across folders takes the file system's rename lock), and no lock, as nothing
        waits between the two. A crash in between leaves at most a hidden ``.dl-*`` file
        beside the blobs (removed by a later ``remove_stale_temp``), never a half-written
        blob. If the blob is already there nothing is written.
        """
        rel = self.relpath(sha256)
        dest = f"{self.root}/{rel}"
        if os.path.exists(dest):
            return rel
        folder = self._folder(rel)
        try:
            fd, name = self._create_temp(folder, "." + TEMP_PREFIX)
        except FileNotFoundError:  # the folder was removed meanwhile
            os.makedirs(folder, exist_ok=True)
            fd, name = self._create_temp(folder, "." + TEMP_PREFIX)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(name, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        return rel

    def exists(self, sha256: str) -> bool:
        return (self.root / self.relpath(sha256)).exists()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.root / self.relpath(sha256), "rb")

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()


class S3BlobStore(BlobStore):
    """Blobs under an S3 prefix (through the S3Hook of ``conn_id``); temporary files are local."""

    def __init__(self, uri: str, tmp: Path, *, conn_id: str = "aws_default") -> None:
        self.uri = uri.rstrip("/") + "/"
        self.bucket, _, self.prefix = self.uri[len("s3://") :].partition("/")
        self.conn_id = conn_id
        self.nested = True
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)

    @cached_property
    def hook(self) -> S3Hook:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id)

    def put(self, temp: Path, sha256: str) -> str:
        rel = self.relpath(sha256)
        try:
            if not self.exists(sha256):
                self.hook.load_file(str(temp), self.prefix + rel, self.bucket, replace=True)
        finally:
            temp.unlink(missing_ok=True)
        return rel

    def put_bytes(self, chunks: list[bytes], sha256: str) -> str:
        rel = self.relpath(sha256)
        if not self.exists(sha256):
            self.hook.load_bytes(b"".join(chunks), self.prefix + rel, self.bucket, replace=True)
        return rel

    def _remove_hidden_temp(self, cutoff: float) -> int:
        return 0  # uploads write nothing beside the blobs

    def exists(self, sha256: str) -> bool:
        return self.hook.head_object(self.prefix + self.relpath(sha256), self.bucket) is not None

    def open(self, sha256: str) -> BinaryIO:
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=self.tmp)  # noqa: SIM115
        body = self.hook.get_conn().get_object(
            Bucket=self.bucket, Key=self.prefix + self.relpath(sha256)
        )
        shutil.copyfileobj(body["Body"], spool)
        spool.seek(0)
        return spool  # type: ignore[return-value]
