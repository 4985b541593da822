"""Deployment build benchmark: compiled C++ library vs TensorFlow Lite (Micro).

Trains the two test models (a CNN on scikit-learn's 8x8 digits, a dense net on
the wine table), builds verified int8 and float32 libraries for each, and
prints side by side: arena vs TensorFlow Lite Micro's, weights and code size
vs the .tflite size, latency per inference of the compiled C++ vs the TF Lite
interpreter on one thread, int8 vs float accuracy on the held-out samples.
The last lines are ``arena_vs_tflm[MODEL]=R`` (int8 library arena / TFLM arena).

    .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.deploy import convert, verify
from edgeloop.deploy.build import build_library
from edgeloop_dev import reference_models


def train(root: Path) -> dict[str, dict[str, Any]]:
    reference_models.seeded_keras(0)
    digits = reference_models.digits_dataset(root)
    cnn = reference_models.train_digits_cnn(digits, root / "cnn.keras")
    wine = reference_models.wine_dataset(root)
    dense = reference_models.train_wine_dense(wine, root / "dense.keras")
    return {
        "cnn": {"model": cnn, "data": digits.path, "labels": reference_models.DIGITS_LABELS},
        "dense": {"model": dense, "data": wine.path, "labels": reference_models.WINE_LABELS},
    }


def tflite_latency_us(tflite: bytes, sample: np.ndarray, min_seconds: float = 0.3) -> float:
    """Microseconds per invoke() of the TF Lite interpreter, one thread."""
    import tensorflow as tf

    with convert.native_output_captured():
        interp = tf.lite.Interpreter(model_content=tflite, num_threads=1)
        interp.allocate_tensors()
    idx = interp.get_input_details()[0]["index"]
    interp.set_tensor(idx, sample[None, ...])
    for _ in range(20):
        interp.invoke()
    n, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < min_seconds:
        for _ in range(200):
            interp.invoke()
        n += 200
        elapsed = time.perf_counter() - t0
    return elapsed / n * 1e6


def measure(name: str, spec: dict[str, Any], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    data = np.load(spec["data"])
    for model_type in ("int8", "float32"):
        folder = root / f"{name}-{model_type}"
        folder.mkdir()
        zip_path = folder / "lib.zip"
        report = build_library(spec["model"], spec["data"], spec["labels"], model_type, zip_path)
        with zipfile.ZipFile(zip_path) as zf:
            tflite = zf.read("tflite-model/trained_model.tflite")
        x0 = data["x_test"][0]
        ref_in = (
            verify.quantize_like_cpp(x0, *_input_q(tflite))
            if model_type == "int8"
            else x0.astype(np.float32)
        )
        report["tflm"] = verify.tflm_arena_usage(tflite, ref_in)
        report["tflite_latency_us"] = tflite_latency_us(tflite, ref_in)
        out[model_type] = report
    return out


def _input_q(tflite: bytes) -> tuple[float, int]:
    from edgeloop.deploy.tflite_graph import read_graph

    g = read_graph(tflite)
    t = g.tensors[g.inputs[0]]
    return t.scale, t.zero_point


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-deploy-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        specs = train(root)
        print(f"trained 2 models in {time.monotonic() - t0:.1f} s")
        results = {name: measure(name, spec, root) for name, spec in specs.items()}

    rows: list[tuple[str, ...]] = [
        (
            "model",
            "type",
            "arena B",
            "no-share B",
            "TFLM arena B",
            "TFLM tensors B",
            "arena/TFLM",
            "weights B",
            "code B",
            ".tflite B",
            "C++ us",
            "TFLite us",
            "accuracy",
        )
    ]
    for name, by_type in results.items():
        for model_type, r in by_type.items():
            acc = r["accuracy"]
            rows.append(
                (
                    name,
                    model_type,
                    str(r["arena_bytes"]),
                    str(r["arena_bytes_without_sharing"]),
                    str(r["tflm"]["total"]),
                    str(r["tflm"].get("head", "?")),
                    f"{r['arena_bytes'] / r['tflm']['total']:.3f}",
                    str(r["weights_bytes"]),
                    str(r["code_bytes"]),
                    str(r["tflite_bytes"]),
                    f"{r['latency_us']:.2f}",
                    f"{r['tflite_latency_us']:.2f}",
                    f"{acc[model_type]:.4f} (float {acc['float']:.4f})",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print()
    print("arena: our static arena (activations only: no interpreter state exists);")
    print("TFLM arena: TensorFlow Lite Micro's total arena (tensors + its runtime data),")
    print("TFLM tensors: the part of it holding tensor buffers (its memory planner's head).")
    print("code: .text of the compiled model + run_classifier (g++ -O2); weights: const data.")
    for name, by_type in results.items():
        r = by_type["int8"]
        delta = (r["accuracy"]["int8"] - r["accuracy"]["float"]) * 100
        print(f"int8_accuracy_delta_points[{name}]={delta:+.2f}")
    for name, by_type in results.items():
        r = by_type["int8"]
        print(f"arena_vs_tflm[{name}]={r['arena_bytes'] / r['tflm']['total']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
