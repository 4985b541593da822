"""Impulse validation, features (images, time-series windows, spectral analysis), metrics,
label suggestions and the validation split: plain functions, no TensorFlow."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgeloop.errors import ConfigError, TrainingError
from edgeloop.training.features import (
    FeatureSet,
    compute_features,
    feature_shape,
    image_array,
    spectral_features,
)
from edgeloop.training.impulse import load_impulse, parse_impulse

REPO = Path(__file__).resolve().parents[2]


def _digits() -> dict:
    return json.loads((REPO / "include/impulses/digits.json").read_text())


def _activity() -> dict:
    return json.loads((REPO / "include/impulses/activity.json").read_text())


@pytest.mark.parametrize("name", ["digits.json", "activity.json"])
def test_shipped_impulses_are_valid(name: str) -> None:
    imp = load_impulse(REPO / "include/impulses" / name)
    assert imp.learning["type"] == "classification"


def test_defaults_are_filled_in() -> None:
    doc = _digits()
    del doc["input"]["resizeMode"], doc["learning"]["seed"], doc["learning"]["epochs"]
    imp = parse_impulse(doc)
    assert imp.input["resizeMode"] == "squash"
    assert imp.seed == 1 and imp.learning["epochs"] == 30
    assert "resizeMode" not in doc["input"]  # the caller's document is not changed


@pytest.mark.parametrize(
    ("edit", "path", "needle"),
    [
        (lambda d: d["input"].update(width=0), "$.input.width", "minimum"),
        (lambda d: d["learning"].update(epochs="ten"), "$.learning.epochs", "not of type"),
        (lambda d: d.update(extra=1), "$", "Additional properties"),
        (
            lambda d: d["learning"]["layers"].append({"type": "lstm"}),
            "$.learning.layers[4].type",
            "lstm",
        ),
        (lambda d: d.pop("processing"), "$", "'processing' is a required property"),
        (lambda d: d["processing"].update(type="spectral-analysis"), "$.processing", "scale"),
        (
            lambda d: d.update(processing={"type": "spectral-analysis"}),
            "$.processing.type",
            "does not apply",
        ),
    ],
)
def test_invalid_impulses_name_the_field(edit, path: str, needle: str, tmp_path: Path) -> None:
    doc = _digits()
    edit(doc)
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as exc:
        load_impulse(file)
    assert str(file) in str(exc.value)
    assert path in str(exc.value)
    assert needle in str(exc.value)


def test_a_window_shorter_than_two_samples_is_refused() -> None:
    doc = _activity()
    doc["input"]["windowSizeMs"] = 10
    with pytest.raises(ConfigError, match=r"\$.input.windowSizeMs"):
        parse_impulse(doc)


def test_unreadable_impulse_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_impulse(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_impulse(tmp_path / "missing.json")


def _png(array: np.ndarray, mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("squash", [[255.0, 0.0], [255.0, 0.0]]),
        # 2x4 -> scale 1 (shortest side), centre crop keeps columns 1..2
        ("fit-shortest", [[255.0, 0.0], [255.0, 0.0]]),
        # 2x4 -> scale 0.5 (longest side) = 1x2, padded top/bottom with black
        ("fit-longest", [[255.0, 0.0], [0.0, 0.0]]),
    ],
)
def test_image_resize_modes(mode: str, expected: list) -> None:
    img = np.array([[255, 255, 0, 0], [255, 255, 0, 0]])  # 2 high, 4 wide
    inp = {"width": 2, "height": 2, "channels": 1, "resizeMode": mode}
    out = image_array(_png(img), inp, {"scale": "0..1"})
    assert out.shape == (2, 2, 1)
    assert np.allclose(out[..., 0] * 255, expected, atol=64)


def test_image_scale_and_rgb() -> None:
    rgb = np.zeros((3, 3, 3))
    rgb[..., 0] = 255
    out = image_array(
        _png(rgb, "RGB"), {"width": 3, "height": 3, "channels": 3, "resizeMode": "squash"},
        {"scale": "-1..1"},
    )  # fmt: skip
    assert out.shape == (3, 3, 3)
    assert np.allclose(out[..., 0], 1.0) and np.allclose(out[..., 1:], -1.0)


def test_spectral_features_find_the_tone_and_the_statistics() -> None:
    hz, n = 50.0, 100
    t = np.arange(n) / hz
    window = np.column_stack([np.sin(2 * np.pi * 12.0 * t), np.full(n, 2.0)])
    proc = {"spectralBins": 5, "statistics": ["mean", "rms", "skewness", "kurtosis"]}
    f = spectral_features(window, proc).reshape(2, 9)  # axis-major
    assert f[0, 0] == pytest.approx(0.0, abs=1e-9)  # mean of the sine
    assert f[0, 1] == pytest.approx(1 / np.sqrt(2), rel=1e-3)  # its rms
    assert f[0, 3] == pytest.approx(-1.5, abs=0.01)  # a sine's excess kurtosis
    bands = f[0, 4:]
    assert int(np.argmax(bands)) == 2  # 12 Hz: bins 0.5..25 Hz in 5 bands, the third
    assert f[1, 0] == 2.0 and f[1, 1] == 0.0 and (f[1, 4:] == -10).all()  # constant axis


class _Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def add(self, data: bytes) -> str:
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        self.data[sha] = data
        return sha

    def read_bytes(self, sha: str) -> bytes:
        return self.data[sha]


def _parquet(n: int, labels: list[str], hz: float = 50.0) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = np.arange(n)
    table = pa.table(
        {
            "timestamp": pa.array((1_660_000_000_000 + t * (1000 / hz)).astype("int64")).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "accX": pa.array(np.sin(t / 3.0), pa.float32()),
            "accY": pa.array(np.cos(t / 5.0), pa.float32()),
            "accZ": pa.array(np.ones(n), pa.float32()),
            "label": pa.array(labels),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _item(i: int, name: str, sha: str, label=None, category="training") -> dict:
    return {
        "id": i,
        "name": name,
        "sha256": sha,
        "label": label,
        "category": category,
        "files": [{"name": name.split("/")[-1], "sha256": sha}],
    }


def test_time_series_windows_take_their_label_column_and_skip_mixed_windows() -> None:
    blobs = _Blobs()
    # 6 s at 50 Hz: 3 s walking then 3 s running; 2 s windows every 1 s -> starts 0,1,2,3,4 s
    sha = blobs.add(_parquet(300, ["walking"] * 150 + ["running"] * 150))
    imp = parse_impulse(_activity())
    fs = compute_features(imp, [_item(1, "AMS_001/combined.parquet", sha)], blobs)
    assert fs.windows.tolist() == [0, 1, 3, 4]  # window 2 (2..4 s) straddles the change
    assert fs.labels.tolist() == ["walking", "walking", "running", "running"]
    assert fs.x.shape == (4, *feature_shape(imp)) == (4, 36)
    assert set(fs.categories.tolist()) == {"training"}


def test_time_series_errors_name_the_item_and_the_problem() -> None:
    blobs = _Blobs()
    imp = parse_impulse(_activity())
    slow = blobs.add(_parquet(300, ["sitting"] * 300, hz=25.0))
    with pytest.raises(TrainingError, match=r"AMS_9.*sampled at 25 Hz.*frequencyHz is 50"):
        compute_features(imp, [_item(1, "AMS_9/combined.parquet", slow)], blobs)
    doc = _activity()
    doc["input"]["axes"] = ["accX", "gyroX"]
    with pytest.raises(TrainingError, match=r"no column\(s\) gyroX"):
        compute_features(
            parse_impulse(doc), [_item(1, "AMS_9/combined.parquet", slow)], blobs
        )  # fmt: skip


def test_raw_processing_and_item_label_without_a_label_column() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"accX": np.arange(10.0), "accY": np.zeros(10)}), buf)
    blobs = _Blobs()
    sha = blobs.add(buf.getvalue())
    doc = _activity()
    doc["input"].update(windowSizeMs=100, windowIncreaseMs=100, axes=["accX", "accY"])
    doc["processing"] = {"type": "raw", "scale": 2.0}
    fs = compute_features(parse_impulse(doc), [_item(1, "a.parquet", sha, label="idle")], blobs)
    assert fs.x.shape == (2, 5, 2)
    assert fs.x[1, :, 0].tolist() == [10.0, 12.0, 14.0, 16.0, 18.0]
    assert fs.labels.tolist() == ["idle", "idle"]


def test_feature_rows_follow_content_not_insertion_order_and_roundtrip() -> None:
    blobs = _Blobs()
    imp = parse_impulse(_digits())
    pngs = [_png(np.full((8, 8), v)) for v in (10, 200, 90)]
    rows = [_item(i, f"{i}.png", blobs.add(p), label=str(i)) for i, p in enumerate(pngs)]
    a = compute_features(imp, rows, blobs)
    b = compute_features(imp, list(reversed(rows)), blobs)
    assert a.item_ids.tolist() == b.item_ids.tolist()
    assert a.item_shas.tolist() == sorted(a.item_shas.tolist())
    back = FeatureSet.from_npz_bytes(a.to_npz_bytes())
    assert np.array_equal(back.x, a.x) and back.labels.tolist() == a.labels.tolist()
    bad = _item(9, "broken.png", blobs.add(b"not a png"))
    with pytest.raises(TrainingError, match=r"broken.png.*not a readable image"):
        compute_features(imp, [bad], blobs)


def test_classification_metrics() -> None:
    from edgeloop.training.train import classification_metrics

    truth = np.array(["a", "a", "b", "b", "c"])
    pred = np.array(["a", "b", "b", "b", "a"])
    m = classification_metrics(truth, pred)
    assert m["accuracy"] == 0.6
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert m["per_class"]["b"] == {"precision": pytest.approx(2 / 3, abs=1e-6), "recall": 1.0,
                                   "support": 2}  # fmt: skip
    assert m["per_class"]["c"] == {"precision": None, "recall": 0.0, "support": 1}
    assert m["confusion"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 0]],
    }


def test_suggestions_vote_by_neighbours() -> None:
    from edgeloop.training.explorer import suggest

    emb = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [0.5, 0.5], [10, 10.5], [5, 5.2]])
    labels = np.array(["a", "a", "a", "b", "b", "", "", ""])
    s, c = suggest(emb, labels, k=3)
    assert s[:5].tolist() == ["", "", "", "", ""] and np.isnan(c[:5]).all()
    assert s[5] == "a" and c[5] == pytest.approx(1.0)
    assert s[6] == "b" and c[6] > 0.9
    assert s[7] in ("a", "b") and 0.3 < c[7] < 0.8  # between the clusters: unsure


def test_validation_split_is_by_item_and_seeded() -> None:
    from edgeloop.training.train import split_features

    n = 40
    fs = FeatureSet(
        np.zeros((n, 2), np.float32),
        np.arange(n) // 2,  # two rows (windows) per item
        np.arange(n) % 2,
        np.array(["a", "b"] * (n // 2)),
        np.array(["training"] * 30 + ["testing"] * 10),
        np.array([f"{i // 2:04d}" for i in range(n)]),
    )
    imp = parse_impulse(_activity())
    one = split_features(fs, imp, "p")
    two = split_features(fs, imp, "p")
    assert one.validation.item_ids.tolist() == two.validation.item_ids.tolist()
    assert len(set(one.validation.item_ids) & set(one.train.item_ids)) == 0
    assert len(np.unique(one.validation.item_ids)) == 3  # 20 % of 15 items
    assert one.labels == ["a", "b"] and len(one.test) == 10
    with pytest.raises(TrainingError, match="at least 2 labels"):
        split_features(fs.select(fs.labels == "a"), imp, "p")


def test_placed_points_are_in_the_stored_maps_coordinates() -> None:
    """openTSNE's transform re-centres the reference map in place; placements must come
    back in the coordinates the old points were stored with (a lopsided map, whose
    bounding-box centre is far from its mean, makes the shift large)."""
    import pickle

    from openTSNE import TSNE

    from edgeloop.training.explorer import place

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (150, 8)), rng.normal(12, 1, (30, 8))]).astype(np.float32)
    fitted = TSNE(perplexity=20, random_state=1, n_jobs=1).fit(x)
    stored = np.array(fitted, copy=True)
    embedding = pickle.loads(pickle.dumps(fitted))  # as the explorer keeps it
    placed = place(embedding, x[::10])
    own = stored[::10]
    spread = np.linalg.norm(stored - stored.mean(axis=0), axis=1).mean()
    assert np.linalg.norm(placed - own, axis=1).mean() < 0.2 * spread
