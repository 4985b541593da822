"""``build_library``: Keras model + representative data -> verified C++ library zip + report.

The zip is written to a temporary name beside the output and renamed only
after verification passed, so a failed build never leaves a (partial) zip.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.deploy import codegen, convert, package, tflite_graph, verify
from edgeloop.deploy.errors import DeployError

log = logging.getLogger(__name__)

MODEL_TYPES = ("int8", "float32")
HOLDOUT_FRACTION = 0.2
MAX_VERIFY_SAMPLES = 1000
LIBRARY_VERSION = "1"


def parse_labels(labels: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A list, a comma-separated string, or a path to a file with one label per line."""
    if isinstance(labels, list | tuple):
        out = [str(s).strip() for s in labels]
        where = "--labels"
    else:
        p = Path(labels)
        looks_like_path = "/" in labels or p.suffix in (".txt", ".csv", ".labels")
        if "," not in labels and looks_like_path and not p.is_file():
            raise DeployError(f"--labels {labels}: labels file not found")
        if "," not in labels and p.is_file():
            out = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
            out = [s for s in out if s]
            where = f"--labels {p}"
        else:
            out = [s.strip() for s in labels.split(",")]
            where = "--labels"
    if not out or any(not s for s in out):
        raise DeployError(f"{where}: labels must be non-empty (got {out!r})")
    if len(set(out)) != len(out):
        raise DeployError(f"{where}: duplicate labels in {out!r}")
    return tuple(out)


def check_output_path(out: Path) -> None:
    if out.exists() and out.is_dir():
        raise DeployError(f"--out {out}: is a directory, expected a .zip file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise DeployError(f"--out {out}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeployError(f"--out {out}: output folder {parent} is not writable")
    if out.exists() and not os.access(out, os.W_OK):
        raise DeployError(f"--out {out}: existing file is not writable")


def load_representative(path: Path, input_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``x`` (samples), optional ``y`` (int labels), optional ``x_test``/``y_test`` held out."""
    if not path.is_file():
        raise DeployError(f"--representative {path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:
        raise DeployError(f"--representative {path}: not a readable .npz file ({exc})") from exc
    if "x" not in arrays:
        raise DeployError(
            f"--representative {path}: no array named 'x' (found {sorted(arrays) or 'none'})"
        )
    for key in ("x", "x_test"):
        if key not in arrays:
            continue
        x = arrays[key]
        if x.ndim < 1 or tuple(x.shape[1:]) != tuple(input_shape) or len(x) == 0:
            raise DeployError(
                f"--representative {path}: array {key!r} has shape {tuple(x.shape)}; the model "
                f"expects (N, {', '.join(map(str, input_shape))}) with N >= 1"
            )
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise DeployError(f"--representative {path}: array {key!r} must hold finite numbers")
        arrays[key] = x.astype(np.float32)
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if yk in arrays:
            y = arrays[yk]
            if xk not in arrays or y.shape != (len(arrays[xk]),):
                raise DeployError(
                    f"--representative {path}: {yk!r} must be a 1-D array with one "
                    f"integer label per row of {xk!r} (shape {tuple(y.shape)})"
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise DeployError(
                    f"--representative {path}: {yk!r} must hold integer labels (dtype {y.dtype})"
                )
    return arrays


def _split(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(calibration x, held-out x, held-out y)."""
    x = arrays["x"]
    if "x_test" in arrays:
        return x, arrays["x_test"], arrays.get("y_test")
    if len(x) < 2:
        return x, x, arrays.get("y")
    n_hold = max(1, round(len(x) * HOLDOUT_FRACTION))
    y = arrays.get("y")
    return x[:-n_hold], x[-n_hold:], (y[-n_hold:] if y is not None else None)


def build_library(
    model: str | Path,
    representative: str | Path,
    labels: str | list[str] | tuple[str, ...],
    model_type: str,
    out: str | Path,
    *,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Build, verify and zip the C++ library; write the report; return the report dict."""
    t_start = time.monotonic()
    out = Path(out)
    if model_type not in MODEL_TYPES:
        raise DeployError(f"--type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    check_output_path(out)
    report_file = Path(report_path) if report_path else out.parent / "report.json"
    keras_model = convert.load_keras_model(model)
    input_shape = convert.model_input_shape(keras_model)
    out_size = convert.model_output_size(keras_model)
    label_list = parse_labels(labels)
    if len(label_list) != out_size:
        raise DeployError(
            f"--labels: {len(label_list)} labels ({', '.join(label_list)}) but the model "
            f"outputs {out_size} values"
        )
    arrays = load_representative(Path(representative), input_shape)
    calib, x_hold, y_hold = _split(arrays)
    x_hold = x_hold[:MAX_VERIFY_SAMPLES]
    y_hold = y_hold[:MAX_VERIFY_SAMPLES] if y_hold is not None else None

    tflite = convert.to_tflite(keras_model, model_type, calib)
    graph = tflite_graph.read_graph(tflite)
    compiled = codegen.generate(graph, model_type)
    log.info(
        "generated C++ for %d operators: arena %d bytes, constants %d bytes",
        len(compiled.op_names),
        compiled.arena_size,
        compiled.weights_bytes,
    )
    info = package.LibraryInfo(label_list, model_type, input_shape, LIBRARY_VERSION)

    with tempfile.TemporaryDirectory(prefix="edgeloop-deploy-") as tmp:
        staging = Path(tmp) / "lib"
        package.write_library(staging, compiled, info, tflite)
        staged_zip = Path(tmp) / "library.zip"
        package.zip_folder(staging, staged_zip)
        work = Path(tmp) / "verify"
        with zipfile.ZipFile(staged_zip) as zf:  # verify exactly what ships
            zf.extractall(work)
        result = verify.verify_library(work, compiled, tflite, model_type, x_hold)
        tflm = verify.tflm_arena_usage(tflite, verify.reference_inputs(compiled, x_hold)[0])

        float_pred = np.asarray(keras_model.predict(x_hold, verbose=0)).reshape(len(x_hold), -1)
        acc: dict[str, float | None] = {"float": None, model_type: None}
        if y_hold is not None:
            acc["float"] = float((float_pred.argmax(1) == y_hold).mean())
            acc[model_type] = float((result.outputs.argmax(1) == y_hold).mean())
        report: dict[str, Any] = {
            "model": str(model),
            "model_type": model_type,
            "labels": list(label_list),
            "input_shape": list(input_shape),
            "zip": str(out),
            "held_out_samples": len(x_hold),
            "accuracy": acc,
            "arena_bytes": compiled.arena_size,
            "arena_bytes_without_sharing": compiled.naive_arena_size,
            "tflm_arena_bytes": tflm["total"],
            "tflm_tensor_arena_bytes": tflm.get("head"),
            "weights_bytes": compiled.weights_bytes,
            "code_bytes": result.code_bytes,
            "rodata_bytes": result.rodata_bytes,
            "tflite_bytes": len(tflite),
            "latency_us": round(result.latency_us, 3),
            "verification": {
                "reference": "tflite-micro" if model_type == "int8" else "tflite-interpreter",
                "samples": result.samples,
                "max_abs_diff": result.max_abs_diff,
                "rule": "bit-exact"
                if model_type == "int8"
                else f"|diff| <= {verify.FLOAT_TOLERANCE} * max(1, |reference|)",
            },
            "operators": compiled.op_names,
            "build_seconds": None,
        }
        # Publish atomically: temp file in the destination folder, then rename.
        fd, tmp_zip = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        try:
            Path(tmp_zip).write_bytes(staged_zip.read_bytes())
            os.replace(tmp_zip, out)
        except OSError as exc:
            Path(tmp_zip).unlink(missing_ok=True)
            raise DeployError(f"--out {out}: cannot write the zip ({exc})") from exc
    report["build_seconds"] = round(time.monotonic() - t_start, 1)
    report_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s (%d bytes) and %s", out, out.stat().st_size, report_file)
    return report
