"""Put uploaded files into the catalog the way the sync puts synced ones: each file into
the content-addressed blob store, then recorded by the sync's own ``record_objects`` (one
live item per content and project, ON CONFLICT dedup; a known name with new content is
updated in place), labeled with the labeling module's rules (``clean_label``,
``infer_label``). Used by the ingestion API and the device-output intake.

An upload's source is ``api://<kind>/`` (kind: training, testing, anomaly, device-output)
and its key the file's name, so the filter language and the Items page show where an
item came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import items, now
from edgeloop.errors import EdgeloopError
from edgeloop.ingest.labeling import clean_label, infer_label
from edgeloop.ingest.source import Fetched, Listed
from edgeloop.ingest.sync import record_objects
from edgeloop.storage.blobs import BlobStore

log = logging.getLogger(__name__)

MAX_NAME = 255


@dataclass(frozen=True)
class UploadSource:
    """The source of uploaded items (what ``record_objects`` needs of a source spec)."""

    kind: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"api://{self.kind}/"

    def url(self, key: str) -> str:
        return f"{self.uri}{key}"


@dataclass
class Upload:
    """One uploaded file and what the uploader said about it."""

    name: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)


def safe_name(raw: str | None, *, add_date_id: bool = False) -> str:
    """The file's base name (no folders, no control characters); with ``add_date_id`` a
    date id before the extension (``cat.20240101T120000-1a2b3c.png``) makes it unique."""
    base = clean_label(PurePosixPath((raw or "").replace("\\", "/")).name) or ""
    if not base:
        raise EdgeloopError(
            f"file name {raw!r} is empty once folders and control chars are removed"
        )
    if len(base) > MAX_NAME:
        raise EdgeloopError(f"file name is longer than {MAX_NAME} characters")
    if add_date_id:
        stem, dot, ext = base.partition(".")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        base = f"{stem}.{stamp}{dot}{ext}" if dot else f"{stem}.{stamp}"
    return base


def store_blob(blobs: BlobStore, data: bytes) -> tuple[str, str]:
    """Write ``data`` into the blob store (temp file, then moved into place); (sha, path)."""
    sha = hashlib.sha256(data).hexdigest()
    temp, fh = blobs.open_temp()
    with fh:
        fh.write(data)
        fh.flush()
        rel = blobs.put(temp, sha)
    return sha, rel


def ingest_uploads(
    project: str,
    uploads: list[Upload],
    *,
    source: UploadSource,
    category: str | None,
    label: str | None = None,
    no_label: bool = False,
    catalog: Catalog | None = None,
    blobs: BlobStore | None = None,
) -> list[dict[str, Any]]:
    """Record ``uploads`` in ``project``; one result per upload, in order.

    A result's ``outcome`` is ``new``, ``updated`` (its name held other content),
    ``unchanged`` or ``duplicate`` (the content is already item ``item_id``). New and
    updated items get the label (``label``; none with ``no_label``; else inferred from
    the file name, the part before the first ``.``), ``category`` and the uploads'
    metadata. Names must be unique within one call.
    """
    catalog = catalog or Catalog.from_settings()
    blobs = blobs or BlobStore.from_settings()
    names = [u.name for u in uploads]
    if len(set(names)) != len(names):
        raise EdgeloopError("two uploaded files have the same name")
    fetched = []
    for u in uploads:
        sha, rel = store_blob(blobs, u.data)
        fetched.append(
            Fetched(obj=Listed(key=u.name, etag=sha[:32], size=len(u.data)), sha256=sha, blob=rel)
        )
    ic = items.c
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, project)
        before = {
            r.source_key: r.sha256
            for r in conn.execute(
                sa.select(ic.source_key, ic.sha256).where(
                    (ic.dataset_id == ds)
                    & (ic.source == source.uri)
                    & ic.source_key.in_(names)
                    & ic.deleted_at.is_(None)
                )
            )
        }
        _, placed = record_objects(conn, ds, source, fetched)
        holder = dict((f.obj.key, item_id) for f, item_id in placed)
        owners = {
            r.id: (r.source, r.source_key, r.label, r.category)
            for r in conn.execute(
                sa.select(ic.id, ic.source, ic.source_key, ic.label, ic.category).where(
                    ic.id.in_(list(holder.values()))
                )
            )
        }
        results: list[dict[str, Any]] = []
        ts = now()
        for u, f in zip(uploads, fetched, strict=True):
            item_id = holder[u.name]
            src, key, old_label, old_category = owners[item_id]
            if (src, key) != (source.uri, u.name):
                outcome = "duplicate"
            elif u.name not in before:
                outcome = "new"
            elif before[u.name] == f.sha256:
                outcome = "unchanged"
            else:
                outcome = "updated"
            result = {"name": u.name, "item_id": item_id, "sha256": f.sha256, "outcome": outcome}
            if outcome in ("new", "updated"):
                if no_label:
                    item_label = None
                elif label is not None:
                    item_label = clean_label(label)
                else:
                    item_label, _ = infer_label(u.name, "infer-from-file-name")
                conn.execute(
                    items.update()
                    .where(ic.id == item_id)
                    .values(
                        label=item_label,
                        category=category,
                        label_pending=False,
                        metadata=json.dumps(u.metadata, sort_keys=True),
                        updated_at=ts,
                    )
                )
                result |= {"label": item_label, "category": category}
            else:
                result |= {"label": old_label, "category": old_category}
            results.append(result)
    for r in results:
        log.info("%s: %s %s (item %s)", project, r["outcome"], source.url(r["name"]), r["item_id"])
    return results
