"""Benchmark: the retrain task against a plain Keras fit + evaluate of the same network on
the same arrays (same epochs), and the explorer's t-SNE map of 5,000 items.

    .venv/bin/python bench/retrain.py [--per-label 150] [--explorer-items 5000]

Runs in a temporary edgeloop home. The last lines are ``retrain_vs_keras=R`` (the
retrain task's wall time over plain Keras's; target <= 1.3) and ``explorer_5k_s=S``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tools")]


def _noisy_digits(n: int, seed: int = 0) -> dict[str, bytes]:
    """``n`` distinct 8x8 PNGs: the digits with a little noise, under their label folder."""
    import numpy as np
    from PIL import Image

    from edgeloop_dev.devenv import _load_digits

    images, target = _load_digits()
    rng = np.random.default_rng(seed)
    out: dict[str, bytes] = {}
    for k in range(n):
        i = k % len(target)
        img = np.clip(images[i] * 16 + rng.normal(0, 6, (8, 8)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        folder = str(target[i]) if k % 10 else "unlabeled"
        out[f"{folder}/{k:05d}.png"] = buf.getvalue()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=150)
    parser.add_argument("--explorer-items", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="edgeloop-bench-retrain-"))
    os.environ["EDGELOOP_HOME"] = str(home)
    for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
        os.environ.pop(key, None)

    from edgeloop.catalog.store import Catalog, upgrade
    from edgeloop.settings import get_settings
    from edgeloop.storage.blobs import BlobStore
    from edgeloop.training import train as T
    from edgeloop.training.explorer import refresh_explorer
    from edgeloop.training.impulse import load_impulse
    from edgeloop.training.samples import add_objects
    from edgeloop_dev.devenv import digit_objects

    upgrade(get_settings().catalog_url)
    catalog, blobs = Catalog.from_settings(), BlobStore.from_settings()
    add_objects("digits", digit_objects(per_label=args.per_label, unlabeled=0))
    impulse = load_impulse(REPO / "include/impulses/digits.json")
    first = T.train("digits", impulse, catalog=catalog, blobs=blobs)  # warms TF up too
    print(f"model 1: {json.dumps({k: first['metrics'][k] for k in ('test_accuracy', 'rows')})}")

    t0 = time.monotonic()
    result = T.retrain("digits", catalog=catalog, blobs=blobs)
    retrain_s = time.monotonic() - t0
    print(f"retrain: model {result['model']} promoted={result['promoted']} in {retrain_s:.2f} s")

    # Plain Keras: the same network, arrays, epochs and batch size.
    fs, _ = T.project_features(catalog, blobs, "digits", impulse)
    split = T.split_features(fs, impulse, "digits")
    t0 = time.monotonic()
    net = T.build_network(impulse, fs.shape, len(split.labels))
    net.fit(
        split.train.x,
        T._indices(split.labels, split.train.labels),
        epochs=impulse.learning["epochs"],
        batch_size=impulse.learning["batchSize"],
        validation_data=(split.validation.x, T._indices(split.labels, split.validation.labels)),
        verbose=0,
    )
    net.evaluate(split.test.x, T._indices(split.labels, split.test.labels), verbose=0)
    keras_s = time.monotonic() - t0
    print(f"plain keras fit + evaluate: {keras_s:.2f} s")

    add_objects("explorer", _noisy_digits(args.explorer_items))
    t0 = time.monotonic()
    ex = refresh_explorer("explorer", impulse=impulse, catalog=catalog, blobs=blobs)
    explorer_s = time.monotonic() - t0
    print(f"explorer: {ex['points']} points in {explorer_s:.2f} s ({ex['png']})")

    print(f"retrain_s={retrain_s:.2f}")
    print(f"keras_s={keras_s:.2f}")
    print(f"retrain_vs_keras={retrain_s / keras_s:.2f}")
    print(f"explorer_5k_s={explorer_s:.2f}")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
