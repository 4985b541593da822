"""Put files into a project without a bucket: key -> bytes, labeled and split the way the
sync's label task does (``infer-from-folder-name``, then the 80/20 split). For tests,
benchmarks and local experiments; a pipeline imports through ``ingest.sync``.

``activity_parquet`` makes a file shaped like the combiner's output for the health study
(the research-combined/1 contract) for the ``activity`` impulse, without the study.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import PurePosixPath

import numpy as np
import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import files, items, now
from edgeloop.ingest.labeling import infer_label, split
from edgeloop.training import registry


def add_objects(
    project: str,
    objects: Mapping[str, bytes],
    *,
    source: str = "local:",
    strategy: str = "infer-from-folder-name",
    catalog: Catalog | None = None,
    blobs=None,
) -> list[int]:
    """Store ``objects`` (key -> content) as new items of ``project``; return their ids.

    Keys already present for ``source`` are left alone (idempotent).
    """
    from edgeloop.storage.blobs import BlobStore

    catalog = catalog or Catalog.from_settings()
    blobs = blobs or BlobStore.from_settings()
    stored = {key: registry.put_bytes(blobs, data) for key, data in sorted(objects.items())}
    ts = now()
    ids: list[int] = []
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, project)
        known = set(
            conn.execute(
                sa.select(items.c.source_key).where(
                    (items.c.dataset_id == ds) & (items.c.source == source)
                )
            ).scalars()
        )
        fresh = [k for k in stored if k not in known]
        to_split: list[tuple[int, str, str | None]] = []
        fixed: dict[int, tuple[str | None, str | None]] = {}
        for key in fresh:
            label, category = infer_label(key, strategy)
            item_id = conn.execute(
                items.insert().values(
                    dataset_id=ds,
                    name=key,
                    label=label,
                    category=category,
                    source=source,
                    source_key=key,
                    sha256=stored[key],
                    size=len(objects[key]),
                    metadata=json.dumps({}),
                    label_pending=False,
                    created_at=ts,
                    updated_at=ts,
                )
            ).inserted_primary_key[0]
            conn.execute(
                files.insert().values(
                    item_id=item_id,
                    name=PurePosixPath(key).name,
                    sha256=stored[key],
                    size=len(objects[key]),
                    blob_path=blobs.relpath(stored[key]),
                )
            )
            ids.append(int(item_id))
            fixed[int(item_id)] = (label, category)
            if category is None:
                to_split.append((int(item_id), stored[key], label))
        if to_split:
            ic = items.c
            existing = {
                r.label: (int(r.total), int(r.testing or 0))
                for r in conn.execute(
                    sa.select(
                        ic.label,
                        sa.func.count().label("total"),
                        sa.func.sum(sa.case((ic.category == "testing", 1), else_=0)).label(
                            "testing"
                        ),
                    )
                    .where(
                        (ic.dataset_id == ds) & ic.deleted_at.is_(None) & ic.category.is_not(None)
                    )
                    .group_by(ic.label)
                )
            }
            for item_id, category in split(to_split, existing).items():
                conn.execute(items.update().where(ic.id == item_id).values(category=category))
    return ids


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# activity -> (step frequency in Hz, amplitude in g) of the wearable's accelerometer
ACTIVITY_PROFILE = {
    "sitting": (0.0, 0.0),
    "walking": (1.8, 0.25),
    "running": (2.7, 0.7),
    "biking": (1.3, 0.12),
}


def activity_parquet(seed: int, seconds_per_activity: int = 20, hz: float = 50.0) -> bytes:
    """A Parquet file with the research-combined/1 columns: the four activities of
    ``ACTIVITY_PROFILE`` one after the other (order drawn with ``seed``), labeled per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    order = list(ACTIVITY_PROFILE)
    rng.shuffle(order)
    n = int(seconds_per_activity * hz)
    acc, labels = [], []
    for name in order:
        step_hz, amp = ACTIVITY_PROFILE[name]
        t = np.arange(n) / hz
        osc = amp * np.sin(2 * np.pi * step_hz * t + rng.uniform(0, 6))
        acc.append(np.column_stack([osc, 0.5 * osc, 1.0 + 0.3 * osc]) + rng.normal(0, 0.03, (n, 3)))
        labels += [name] * n
    values = np.vstack(acc).astype(np.float32)
    total = len(values)
    ts = 1_660_000_000_000 + (np.arange(total) * (1000 / hz)).astype("int64")
    table = pa.table(
        {
            "timestamp": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
            "accX": values[:, 0],
            "accY": values[:, 1],
            "accZ": values[:, 2],
            "ppg": np.zeros(total, np.float32),
            "hr_ppg": pa.array([None] * total, pa.float32()),
            "hr_ref": np.full(total, 70.0, np.float32),
            "label": labels,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
