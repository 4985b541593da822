"""Content-addressed blob store: a file is stored once, under its sha256.

A blob is written to a temporary name under the root and renamed into place, so
a crash leaves at most an orphan temporary file, never a half-written blob.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls) -> BlobStore:
        from edgeloop.settings import get_settings

        return cls(get_settings().blob_root)

    @staticmethod
    def relpath(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    def temp_file(self) -> Path:
        """A fresh temporary path on the blob root's file system (for atomic moves)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="dl-")
        os.close(fd)
        return Path(name)

    def put(self, temp: Path, sha256: str) -> str:
        """Move a fully written temp file into place; returns the blob's relative path.

        If the blob already exists the temp file is dropped: content is stored once.
        """
        rel = self.relpath(sha256)
        dest = self.root / rel
        if dest.exists():
            temp.unlink(missing_ok=True)
            return rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, dest)
        return rel

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()
