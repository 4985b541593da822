"""Content-addressed blob store: a file is stored once, under its sha256.

The root is a local folder (default) or an S3 prefix (``EDGELOOP_BLOB_ROOT=s3://bucket/prefix``,
credentials from the Airflow connection ``EDGELOOP_BLOB_CONN_ID``, default ``aws_default``).
A blob is written to a temporary file and moved (or uploaded) into place under
its final name only when complete, so a crash leaves at most an orphan temporary
file, never a half-written blob.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO


def relpath(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore:
    """Blobs under a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def from_settings() -> BlobStore:
        from edgeloop.settings import get_settings

        settings = get_settings()
        if settings.blob_root.startswith("s3://"):
            return S3BlobStore(
                settings.blob_root, settings.home / "blob-tmp", conn_id=settings.blob_conn_id
            )
        return BlobStore(settings.blob_root)

    def temp_file(self) -> Path:
        """A fresh temporary path beside the blobs (same file system: atomic moves)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="dl-")
        os.close(fd)
        return Path(name)

    def put(self, temp: Path, sha256: str) -> str:
        """Move a fully written temp file into place; return the blob's relative path.

        If the blob is already there the temp file is dropped: content is stored once.
        """
        rel = relpath(sha256)
        dest = self.root / rel
        if dest.exists():
            temp.unlink(missing_ok=True)
            return rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, dest)
        return rel

    def exists(self, sha256: str) -> bool:
        return (self.root / relpath(sha256)).exists()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.root / relpath(sha256), "rb")

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()


class S3BlobStore(BlobStore):
    """Blobs under an S3 prefix; temporary files are local."""

    def __init__(self, uri: str, tmp: Path, *, conn_id: str = "aws_default") -> None:
        self.uri = uri.rstrip("/") + "/"
        self.bucket, _, self.prefix = self.uri[len("s3://") :].partition("/")
        self.conn_id = conn_id
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._client = S3Hook(aws_conn_id=self.conn_id).get_conn()
        return self._client

    def put(self, temp: Path, sha256: str) -> str:
        rel = relpath(sha256)
        try:
            if not self.exists(sha256):
                self.client.upload_file(str(temp), self.bucket, self.prefix + rel)
        finally:
            temp.unlink(missing_ok=True)
        return rel

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + relpath(sha256))
        except ClientError as exc:
            if exc.response["Error"].get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def open(self, sha256: str) -> BinaryIO:
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=self.tmp)  # noqa: SIM115
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + relpath(sha256))
        shutil.copyfileobj(body["Body"], spool)
        spool.seek(0)
        return spool  # type: ignore[return-value]
