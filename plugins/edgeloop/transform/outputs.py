"""A block's outputs into the catalog: files stored content-addressed, items created or
updated by name, metadata applied — in the caller's transaction.

Items made by blocks have ``source = BLOCK_SOURCE`` and ``source_key`` = their name; their
``sha256`` is a hash of their name and files (dataset items) or of their one file
(project items, like synced ones: identical content is one live item per project).
Synced items keep their own ``sha256`` when a block adds files to them, so the sync's
ledger still recognizes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from edgeloop.catalog.tables import files, items, now
from edgeloop.storage.blobs import BlobStore

log = logging.getLogger(__name__)

BLOCK_SOURCE = "edgeloop-block"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Stored:
    name: str  # the file's name in its item (a relative path)
    sha256: str
    size: int
    blob: str


@dataclass
class Outcome:
    """What a unit's outputs did to the catalog."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    items: set[int] = field(default_factory=set)  # created or changed

    def add(self, status: str, item_id: int | None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        if item_id is not None and status in ("created", "updated"):
            self.items.add(item_id)


def store_file(blobs: BlobStore, path: Path, name: str) -> Stored:
    """Copy a local file into the blob store (hashed while copying); stored once."""
    digest, size = hashlib.sha256(), 0
    temp, out = blobs.open_temp()
    try:
        with out, open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            sha = digest.hexdigest()
            blob = blobs.put(temp, sha)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Stored(name=name, sha256=sha, size=size, blob=blob)


def materialize(blobs: BlobStore, sha256: str, dest: Path) -> None:
    """Write a blob to ``dest`` (the block's input)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with blobs.open(sha256) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def folder_sha(name: str, stored: list[tuple[str, str]]) -> str:
    text = name + "\n" + "\n".join(f"{n}\t{s}" for n, s in sorted(stored))
    return hashlib.sha256(text.encode()).hexdigest()


def _live_by_name(conn: sa.Connection, dataset_id: int, name: str):
    return conn.execute(
        sa.select(items)
        .where(
            (items.c.dataset_id == dataset_id)
            & (items.c.name == name)
            & items.c.deleted_at.is_(None)
        )
        .order_by(items.c.id)
        .limit(1)
    ).first()


def _split_category(sha256: str) -> str:
    """A deterministic 80/20 split by content."""
    return "testing" if int(sha256[:8], 16) % 5 == 0 else "training"


def upsert_item(
    conn: sa.Connection,
    dataset_id: int,
    name: str,
    new_files: list[Stored],
    metadata: dict[str, str] | None,
    *,
    label: str | None = None,
    category: str | None = None,
    one_file: bool = False,
) -> tuple[str, int | None]:
    """Create the item ``name`` of the dataset, or add ``new_files`` to it (a file of the
    same name is replaced) and set its metadata. Returns (created | updated | unchanged |
    duplicates, item id)."""
    ts = now()
    row = _live_by_name(conn, dataset_id, name)
    if row is None:
        # a deleted item of the same key comes back (the key is unique per dataset)
        row = conn.execute(
            sa.select(items).where(
                (items.c.dataset_id == dataset_id)
                & (items.c.source == BLOCK_SOURCE)
                & (items.c.source_key == name)
            )
        ).first()
        revived = row is not None
    else:
        revived = False
    if row is None:
        sha = (
            new_files[0].sha256
            if one_file
            else folder_sha(name, [(f.name, f.sha256) for f in new_files])
        )
        if category == "split":
            category = _split_category(sha)
        try:
            with conn.begin_nested():
                item_id = conn.execute(
                    items.insert()
                    .values(
                        dataset_id=dataset_id,
                        name=name,
                        label=label,
                        category=category,
                        source=BLOCK_SOURCE,
                        source_key=name,
                        sha256=sha,
                        size=sum(f.size for f in new_files),
                        metadata=json.dumps(metadata or {}, sort_keys=True),
                        label_pending=False,
                        created_at=ts,
                        updated_at=ts,
                    )
                    .returning(items.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            log.info("duplicate content: %s is already an item of this dataset", name)
            return "duplicates", None
        if new_files:
            conn.execute(
                files.insert(),
                [
                    {
                        "item_id": item_id,
                        "name": f.name,
                        "sha256": f.sha256,
                        "size": f.size,
                        "blob_path": f.blob,
                    }
                    for f in new_files
                ],
            )
        return "created", item_id

    item_id = row.id
    changed = revived
    have = {r.name: r for r in conn.execute(sa.select(files).where(files.c.item_id == item_id))}
    if one_file:
        for old in set(have) - {f.name for f in new_files}:
            conn.execute(files.delete().where(files.c.id == have.pop(old).id))
            changed = True
    for f in new_files:
        old = have.get(f.name)
        if old is None:
            conn.execute(
                files.insert().values(
                    item_id=item_id, name=f.name, sha256=f.sha256, size=f.size, blob_path=f.blob
                )
            )
            changed = True
        elif old.sha256 != f.sha256:
            conn.execute(
                files.update()
                .where(files.c.id == old.id)
                .values(sha256=f.sha256, size=f.size, blob_path=f.blob)
            )
            changed = True
    values: dict[str, object] = {}
    if metadata is not None and json.loads(row.metadata or "{}") != metadata:
        values["metadata"] = json.dumps(metadata, sort_keys=True)
    if row.source == BLOCK_SOURCE and changed:
        all_files = [
            (r.name, r.sha256, r.size)
            for r in conn.execute(sa.select(files).where(files.c.item_id == item_id))
        ]
        values["sha256"] = (
            new_files[0].sha256 if one_file else folder_sha(name, [(n, s) for n, s, _ in all_files])
        )
        values["size"] = sum(z for _, _, z in all_files)
    if label is not None and row.label != label:
        values["label"] = label
    if not values and not changed:
        return "unchanged", item_id
    values.update(updated_at=ts, deleted_at=None)
    try:
        with conn.begin_nested():
            conn.execute(items.update().where(items.c.id == item_id).values(**values))
    except sa.exc.IntegrityError:
        log.info("duplicate content: %s now equals another item of this dataset", name)
        return "duplicates", None
    return "updated", item_id


def set_metadata(conn: sa.Connection, item_id: int, metadata: dict[str, str]) -> str:
    """Only the item's metadata changes (a block that wrote only ei-metadata.json)."""
    row = conn.execute(sa.select(items.c.metadata).where(items.c.id == item_id)).first()
    if row is None or json.loads(row.metadata or "{}") == metadata:
        return "unchanged"
    conn.execute(
        items.update()
        .where(items.c.id == item_id)
        .values(metadata=json.dumps(metadata, sort_keys=True), updated_at=now())
    )
    return "updated"


def stored_outputs(blobs: BlobStore, out_dir: Path, outputs: tuple[str, ...]) -> list[Stored]:
    return [store_file(blobs, out_dir / rel, rel) for rel in outputs]
