"""The activity impulse on combined Parquet files (the research-combined/1 contract):
windows labelled from the label column, spectral features, a dense classifier and the
K-means anomaly block; the explorer over windows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROFILE = {
    "sitting": (0.0, 0.0),
    "walking": (1.8, 0.25),
    "running": (2.7, 0.7),
    "biking": (1.3, 0.12),
}


def combined_parquet(seed: int, seconds_per_activity: int = 20, hz: float = 50.0) -> bytes:
    """A file with the contract's columns: four activities one after the other."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    order = list(PROFILE)
    rng.shuffle(order)
    n = int(seconds_per_activity * hz)
    acc, labels = [], []
    for name in order:
        step_hz, amp = PROFILE[name]
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


def test_activity_impulse_trains_on_windows(edgeloop_home: Path) -> None:
    from edgeloop.catalog.store import Catalog
    from edgeloop.training import registry
    from edgeloop.training.explorer import refresh_explorer
    from edgeloop.training.samples import add_objects
    from edgeloop.training.train import train

    objects = {f"training/study/AMS_{i:03d}.parquet": combined_parquet(i) for i in range(5)}
    objects |= {f"testing/study/AMS_{i:03d}.parquet": combined_parquet(i) for i in (10, 11)}
    add_objects("activity", objects)
    doc = json.loads((REPO / "include/impulses/activity.json").read_text())
    doc["learning"]["epochs"] = 15
    result = train("activity", doc)
    m = result["metrics"]
    # 80 s per file, 2 s windows every 1 s: 79 windows, 3 of them across a change
    assert m["rows"]["testing"] == 2 * 76
    assert m["rows"]["training"] + m["rows"]["validation"] == 5 * 76
    assert m["items"]["validation"] == 1  # windows of one file never straddle the split
    assert set(m["per_class"]) == set(PROFILE)
    assert m["test_accuracy"] > 0.9
    assert m["anomaly"]["clusters"] == 8 and m["anomaly"]["testing_anomalous_fraction"] < 0.2
    model = registry.current_model(Catalog.from_settings(), "activity")
    assert model["anomaly_sha"] and model["labels"] == sorted(PROFILE)

    explorer = refresh_explorer("activity")
    assert explorer["points"] == 7 * 76 and explorer["unlabeled"] == 0
