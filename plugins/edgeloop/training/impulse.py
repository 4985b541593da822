"""A project's impulse: input block, processing block, learning block, optional anomaly block.

``load_impulse(path)`` reads and validates a JSON file against
``impulse.schema.json``; ``parse_impulse(doc)`` does the same for a document
(e.g. the one stored with a model). The result is a frozen ``Impulse`` with the
schema's defaults filled in; ``Impulse.document`` is what gets stored.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.errors import ConfigError

SCHEMA = "impulse.schema.json"

_DEFAULTS: dict[str, dict[str, Any]] = {
    "image-input": {"channels": 1, "resizeMode": "squash"},
    "time-series-input": {"labelColumn": "label", "fileTypes": [".parquet"]},
    "image-processing": {"scale": "0..1"},
    "spectral-analysis-processing": {
        "spectralBins": 8,
        "statistics": ["mean", "rms", "skewness", "kurtosis"],
    },
    "raw-processing": {"scale": 1.0},
    "classification-learning": {
        "epochs": 30,
        "batchSize": 32,
        "learningRate": 0.005,
        "validationSplit": 0.2,
        "seed": 1,
    },
    "kmeans-anomaly": {"clusters": 8, "threshold": 0.99},
}

_COMPATIBLE = {
    "image": ("image", "raw"),
    "time-series": ("spectral-analysis", "raw"),
}


@dataclass(frozen=True)
class Impulse:
    """A validated impulse with every default filled in (``document`` is the full JSON)."""

    document: dict[str, Any]

    @property
    def input(self) -> dict[str, Any]:
        return self.document["input"]

    @property
    def processing(self) -> dict[str, Any]:
        return self.document["processing"]

    @property
    def learning(self) -> dict[str, Any]:
        return self.document["learning"]

    @property
    def anomaly(self) -> dict[str, Any] | None:
        return self.document.get("anomaly")

    @property
    def kind(self) -> str:
        """``image`` or ``time-series``."""
        return self.input["type"]

    @property
    def seed(self) -> int:
        return int(self.learning["seed"])

    def to_json(self) -> str:
        return json.dumps(self.document, sort_keys=True, indent=1)


def _validate(document: Any, file: str) -> None:
    from edgeloop.blocks._schemas import validate

    validate(document, SCHEMA, file=file)


def parse_impulse(document: Any, *, file: str = "impulse") -> Impulse:
    """Validate an impulse document and fill in its defaults."""
    _validate(document, file)
    doc = copy.deepcopy(document)
    for block in ("input", "processing", "learning", "anomaly"):
        if block in doc:
            for key, value in _DEFAULTS.get(f"{doc[block]['type']}-{block}", {}).items():
                doc[block].setdefault(key, copy.deepcopy(value))
    kind, proc = doc["input"]["type"], doc["processing"]["type"]
    if proc not in _COMPATIBLE[kind]:
        raise ConfigError(
            f"processing block {proc!r} does not apply to {kind!r} input",
            file=file,
            path="$.processing.type",
            expected=" or ".join(repr(p) for p in _COMPATIBLE[kind]),
            value=proc,
        )
    if kind == "time-series":
        inp = doc["input"]
        samples = window_samples(inp)
        if samples < 2:
            raise ConfigError(
                "a window must hold at least 2 samples",
                file=file,
                path="$.input.windowSizeMs",
                expected=f">= {2000.0 / inp['frequencyHz']:.0f} ms at {inp['frequencyHz']} Hz",
                value=inp["windowSizeMs"],
            )
    return Impulse(doc)


def load_impulse(path: str | Path) -> Impulse:
    """Read and validate an impulse JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the impulse: {exc.strerror}", file=str(path)) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=str(path)
        ) from exc
    return parse_impulse(document, file=str(path))


def window_samples(inp: dict[str, Any]) -> int:
    """Samples in one time-series window."""
    return round(inp["windowSizeMs"] * inp["frequencyHz"] / 1000.0)


def window_step(inp: dict[str, Any]) -> int:
    """Samples between the starts of two consecutive windows (at least 1)."""
    return max(1, round(inp["windowIncreaseMs"] * inp["frequencyHz"] / 1000.0))
