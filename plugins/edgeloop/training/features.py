"""Features from the blob store: images → normalized pixel arrays; time-series files →
windows → spectral features (or raw values).

``compute_features(impulse, items, blobs)`` takes catalog item rows (``Catalog.list_items``:
with ``files``) and returns a ``FeatureSet``: one row per image item or per time-series
window, with the item, label and category of each row. Nothing here knows about models.
A ``FeatureSet`` is saved as ``.npz`` (``to_npz_bytes``/``from_npz_bytes``) in the blob store.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from edgeloop.errors import TrainingError
from edgeloop.training.impulse import Impulse, window_samples, window_step

log = logging.getLogger(__name__)

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class FeatureSet:
    """Rows of features. ``labels``/``categories`` are '' where the item has none."""

    x: np.ndarray  # (rows, *feature shape) float32
    item_ids: np.ndarray  # (rows,) int64
    windows: np.ndarray  # (rows,) int64: window index within the item (0 for images)
    labels: np.ndarray  # (rows,) str
    categories: np.ndarray  # (rows,) str
    item_shas: np.ndarray  # (rows,) str: the item's content hash

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def select(self, mask: np.ndarray) -> FeatureSet:
        return FeatureSet(
            self.x[mask],
            self.item_ids[mask],
            self.windows[mask],
            self.labels[mask],
            self.categories[mask],
            self.item_shas[mask],
        )

    def category(self, name: str, *, labeled: bool = True) -> FeatureSet:
        mask = self.categories == name
        if labeled:
            mask &= self.labels != ""
        return self.select(mask)

    def to_npz_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            x=self.x,
            item_ids=self.item_ids,
            windows=self.windows,
            labels=self.labels.astype("U"),
            categories=self.categories.astype("U"),
            item_shas=self.item_shas.astype("U"),
        )
        return buf.getvalue()

    @staticmethod
    def from_npz_bytes(data: bytes) -> FeatureSet:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return FeatureSet(
                npz["x"],
                npz["item_ids"],
                npz["windows"],
                npz["labels"],
                npz["categories"],
                npz["item_shas"],
            )


def _pick_file(item: dict[str, Any], suffixes: tuple[str, ...]) -> dict[str, Any] | None:
    for f in sorted(item["files"], key=lambda f: f["name"]):
        if PurePosixPath(f["name"]).suffix.lower() in suffixes:
            return f
    return None


# -- images ------------------------------------------------------------------------------


def image_array(data: bytes, inp: dict[str, Any], proc: dict[str, Any]) -> np.ndarray:
    """Decode, convert, resize (per ``resizeMode``) and scale one image → (h, w, c) float32."""
    from PIL import Image

    width, height, channels = inp["width"], inp["height"], inp["channels"]
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        mode = inp["resizeMode"]
        if img.size != (width, height):
            if mode == "squash":
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            else:
                sx, sy = width / img.width, height / img.height
                scale = max(sx, sy) if mode == "fit-shortest" else min(sx, sy)
                new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(new, Image.Resampling.BILINEAR)
                canvas = Image.new(img.mode, (width, height))
                canvas.paste(img, ((width - new[0]) // 2, (height - new[1]) // 2))
                img = canvas
        pixels = np.asarray(img, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    scaled = pixels / 255.0
    if proc.get("scale") == "-1..1":
        scaled = scaled * 2.0 - 1.0
    return scaled.astype(np.float32)


# -- time series -------------------------------------------------------------------------


def read_table(data: bytes, name: str):  # -> pyarrow.Table
    import pyarrow as pa

    if name.lower().endswith(".csv"):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(pa.BufferReader(data))
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def spectral_features(window: np.ndarray, proc: dict[str, Any]) -> np.ndarray:
    """Per axis: the chosen statistics, then log10 power in ``spectralBins`` equal bands."""
    n = window.shape[0]
    mean = window.mean(axis=0)
    centred = window - mean
    rms = np.sqrt((centred**2).mean(axis=0))
    safe = np.where(rms > 0, rms, 1.0)
    stats = {
        "mean": mean,
        "rms": rms,
        "skewness": np.where(rms > 0, (centred**3).mean(axis=0) / safe**3, 0.0),
        "kurtosis": np.where(rms > 0, (centred**4).mean(axis=0) / safe**4 - 3.0, 0.0),
        "peak-to-peak": window.max(axis=0) - window.min(axis=0),
    }
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(n)[:, None], axis=0)) ** 2 / n
    bands = np.array_split(spectrum[1:], proc["spectralBins"], axis=0)  # without DC
    power = np.stack([b.sum(axis=0) if len(b) else np.zeros(window.shape[1]) for b in bands])
    rows = [stats[s] for s in proc["statistics"]] + list(np.log10(power + 1e-10))
    # axis-major: axis 0's features, then axis 1's ...
    return np.stack(rows, axis=1).reshape(-1).astype(np.float32)


def windows_of(
    impulse: Impulse, item: dict[str, Any], file: dict[str, Any], data: bytes
) -> tuple[list[np.ndarray], list[str], list[int]]:
    """(window arrays (samples, axes), window labels, window indices) of one file."""
    inp = impulse.input
    try:
        table = read_table(data, file["name"])
    except Exception as exc:
        raise TrainingError(
            f"item {item['name']!r}: file {file['name']!r} is not a readable table ({exc})"
        ) from exc
    missing = [a for a in inp["axes"] if a not in table.column_names]
    if missing:
        raise TrainingError(
            f"item {item['name']!r}: file {file['name']!r} has no column(s) "
            f"{', '.join(missing)} named in the impulse's input.axes "
            f"(columns: {', '.join(table.column_names)})"
        )
    values = np.column_stack(
        [table.column(a).to_numpy(zero_copy_only=False).astype(np.float64) for a in inp["axes"]]
    )
    if not np.isfinite(values).all():
        raise TrainingError(f"item {item['name']!r}: file {file['name']!r} holds NaN or infinity")
    if "timestamp" in table.column_names and table.num_rows > 2:
        ts = table.column("timestamp").cast("int64").to_numpy()  # ms
        step = float(np.median(np.diff(ts)))
        if step > 0:
            hz = 1000.0 / step
            if abs(hz - inp["frequencyHz"]) > 0.1 * inp["frequencyHz"]:
                raise TrainingError(
                    f"item {item['name']!r}: file {file['name']!r} is sampled at {hz:.3g} Hz, "
                    f"the impulse's input.frequencyHz is {inp['frequencyHz']}"
                )
    label_col = inp["labelColumn"]
    sample_labels = (
        np.asarray(table.column(label_col).to_pylist(), dtype=object)
        if label_col in table.column_names
        else None
    )
    size, step = window_samples(inp), window_step(inp)
    out, labels, index = [], [], []
    for w, start in enumerate(range(0, len(values) - size + 1, step)):
        if sample_labels is not None:
            seg = sample_labels[start : start + size]
            if seg[0] is None or (seg != seg[0]).any():
                continue  # a window across two labels (or unlabeled) is not used
            label = str(seg[0])
        else:
            label = item["label"] or ""
        out.append(values[start : start + size])
        labels.append(label)
        index.append(w)
    return out, labels, index


# -- the feature set ---------------------------------------------------------------------


def compute_features(impulse: Impulse, items: list[dict[str, Any]], blobs) -> FeatureSet:
    """Features of every live item that has a file the impulse's input reads.

    Items are taken in the order of their content hash (then name), so the rows do
    not depend on catalog ids or insertion order.
    """
    ordered = sorted(items, key=lambda r: (r["sha256"], r["name"]))
    xs: list[np.ndarray] = []
    ids: list[int] = []
    wins: list[int] = []
    labels: list[str] = []
    cats: list[str] = []
    shas: list[str] = []
    skipped = 0
    image = impulse.kind == "image"
    suffixes = IMAGE_TYPES if image else tuple(impulse.input["fileTypes"])
    for n, item in enumerate(ordered, 1):
        f = _pick_file(item, suffixes)
        if f is None:
            skipped += 1
            continue
        data = blobs.read_bytes(f["sha256"])
        if image:
            try:
                xs.append(image_array(data, impulse.input, impulse.processing))
            except Exception as exc:
                raise TrainingError(
                    f"item {item['name']!r}: file {f['name']!r} is not a readable image ({exc})"
                ) from exc
            win_x, win_labels, win_idx = [xs.pop()], [item["label"] or ""], [0]
        else:
            windows, win_labels, win_idx = windows_of(impulse, item, f, data)
            if impulse.processing["type"] == "spectral-analysis":
                win_x = [spectral_features(w, impulse.processing) for w in windows]
            else:
                scale = float(impulse.processing["scale"])
                win_x = [(w * scale).astype(np.float32) for w in windows]
        xs.extend(win_x)
        ids.extend([int(item["id"])] * len(win_x))
        wins.extend(win_idx)
        labels.extend(win_labels)
        cats.extend([item["category"] or ""] * len(win_x))
        shas.extend([item["sha256"]] * len(win_x))
        if n % PROGRESS_EVERY == 0:
            log.info("features: %s of %s items", n, len(ordered))
    if skipped:
        log.info("features: %s item(s) without a %s file skipped", skipped, "/".join(suffixes))
    if xs:
        x = np.stack(xs).astype(np.float32)
    else:
        x = np.zeros((0, *feature_shape(impulse)), np.float32)
    return FeatureSet(
        x,
        np.asarray(ids, np.int64),
        np.asarray(wins, np.int64),
        np.asarray(labels, dtype="U"),
        np.asarray(cats, dtype="U"),
        np.asarray(shas, dtype="U"),
    )


def feature_shape(impulse: Impulse) -> tuple[int, ...]:
    inp, proc = impulse.input, impulse.processing
    if impulse.kind == "image":
        return (inp["height"], inp["width"], inp["channels"])
    if proc["type"] == "spectral-analysis":
        return (len(inp["axes"]) * (len(proc["statistics"]) + proc["spectralBins"]),)
    return (window_samples(inp), len(inp["axes"]))
