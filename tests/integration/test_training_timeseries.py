"""The activity impulse on combined Parquet files (the research-combined/1 contract):
windows labelled from the label column, spectral features, a dense classifier and the
K-means anomaly block; the explorer over windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_activity_impulse_trains_on_windows(edgeloop_home: Path) -> None:
    from edgeloop.catalog.store import Catalog
    from edgeloop.training import registry
    from edgeloop.training.explorer import refresh_explorer
    from edgeloop.training.samples import ACTIVITY_PROFILE, activity_parquet, add_objects
    from edgeloop.training.train import train

    objects = {f"training/study/AMS_{i:03d}.parquet": activity_parquet(i) for i in range(5)}
    objects |= {f"testing/study/AMS_{i:03d}.parquet": activity_parquet(i) for i in (10, 11)}
    add_objects("activity", objects)
    doc = json.loads((REPO / "include/impulses/activity.json").read_text())
    doc["learning"]["epochs"] = 15
    result = train("activity", doc)
    m = result["metrics"]
    # 80 s per file, 2 s windows every 1 s: 79 windows, 3 of them across a change
    assert m["rows"]["testing"] == 2 * 76
    assert m["rows"]["training"] + m["rows"]["validation"] == 5 * 76
    assert m["items"]["validation"] == 1  # windows of one file never straddle the split
    assert set(m["per_class"]) == set(ACTIVITY_PROFILE)
    assert m["test_accuracy"] > 0.9
    assert m["anomaly"]["clusters"] == 8 and m["anomaly"]["testing_anomalous_fraction"] < 0.2
    model = registry.current_model(Catalog.from_settings(), "activity")
    assert model["anomaly_sha"] and model["labels"] == sorted(ACTIVITY_PROFILE)

    explorer = refresh_explorer("activity")
    assert explorer["points"] == 7 * 76 and explorer["unlabeled"] == 0
