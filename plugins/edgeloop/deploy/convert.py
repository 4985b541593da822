"""Keras model -> TensorFlow Lite (float32, or full-integer int8 with int8 input/output).

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.deploy.errors import DeployError

log = logging.getLogger(__name__)

MAX_CALIBRATION_SAMPLES = 300


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and Python logging out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


class Captured:
    text: str = ""


@contextlib.contextmanager
def native_output_captured() -> Iterator[Captured]:
    """Capture what C/C++ code prints on fds 1 and 2 (TensorFlow's converter, TFLM)."""
    cap = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield cap
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            cap.text = tmp.read().decode(errors="replace")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_ZIP_CONFIG = "config.json"


def _is_hdf5(path: Path) -> bool:
    """HDF5's signature, at offset 0 or after a user block (512, 1024, 2048, ... bytes)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def check_model_file(p: Path) -> None:
    """Refuse, before Keras reads it, a file that cannot be a Keras model (by its content)."""
    if p.suffix == ".keras":
        expected = f"expected a .keras zip archive holding {KERAS_ZIP_CONFIG} and the weights"
        try:
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DeployError(
                f"--model {p}: not a Keras model file ({expected}; "
                f"this file is not a zip archive: {exc})"
            ) from exc
        if KERAS_ZIP_CONFIG not in names:
            raise DeployError(
                f"--model {p}: not a Keras model file ({expected}; this zip archive holds "
                f"no {KERAS_ZIP_CONFIG})"
            )
    elif p.suffix == ".h5" and not _is_hdf5(p):
        raise DeployError(
            f"--model {p}: not a Keras model file (expected a legacy .h5 Keras model, "
            "an HDF5 file; this file has no HDF5 signature)"
        )


def check_finite_weights(model: Any, path: str | Path) -> None:
    """Refuse a model with NaN or infinite weights, naming the layers and weights that hold them.

    Without this, an int8 conversion produces NaN quantization scales and a
    float32 one constants that are not C++ numbers.
    """
    bad = []
    for w in model.weights:
        values = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values).all():
            continue
        weight = str(getattr(w, "path", None) or w.name)
        layer = weight.split("/")[-2] if "/" in weight else weight
        n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        bad.append(
            f"layer {layer!r} ({weight}: {n_nan} NaN and {n_inf} infinite of {values.size} values)"
        )
    if bad:
        raise DeployError(
            f"--model {path}: non-finite weights in {'; '.join(bad)}; a model can only be "
            "deployed with finite weights (retrain it)"
        )


def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` (or legacy ``.h5``) model; DeployError says which file and why."""
    p = Path(path)
    if not p.exists():
        raise DeployError(f"--model {p}: model file not found")
    if not p.is_file():
        raise DeployError(f"--model {p}: not a file")
    if p.suffix not in (".keras", ".h5"):
        raise DeployError(
            f"--model {p}: not a Keras model file (expected a .keras or .h5 file, "
            f"got {p.suffix or 'no extension'!r})"
        )
    check_model_file(p)
    quiet_tensorflow()
    import keras

    try:
        model = keras.models.load_model(p, compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zipfile errors alike
        raise DeployError(f"--model {p}: not a readable Keras model ({exc})") from exc
    if not hasattr(model, "inputs") or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise DeployError(f"--model {p}: only models with one input and one output are supported")
    check_finite_weights(model, p)
    return model


def model_input_shape(model: Any) -> tuple[int, ...]:
    shape = tuple(model.inputs[0].shape)[1:]
    if any(s is None for s in shape):
        raise DeployError(
            f"the model input shape {shape} has unknown dimensions; "
            "give the Input layer a fixed shape"
        )
    return tuple(int(s) for s in shape)


def model_output_size(model: Any) -> int:
    shape = tuple(model.outputs[0].shape)[1:]
    return int(np.prod([int(s) for s in shape])) if shape else 1


def to_tflite(
    model: Any, model_type: str, calibration: np.ndarray, *, float_io: bool = False
) -> bytes:
    """Convert with batch size fixed to 1 (no dynamic-shape ops in the graph).

    ``float_io`` keeps a float32 input and output on an int8 model (the graph
    then starts with QUANTIZE and ends with DEQUANTIZE); the library build
    uses int8 input and output.
    """
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    inp = keras.Input(shape=model_input_shape(model), batch_size=1)
    fixed = keras.Model(inp, model(inp))
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    if model_type == "int8":
        samples = np.asarray(calibration[:MAX_CALIBRATION_SAMPLES], dtype=np.float32)

        def representative() -> Any:
            for s in samples:
                yield [s[None, ...]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif model_type != "float32":
        raise DeployError(f"--type must be int8 or float32, got {model_type!r}")
    try:
        with native_output_captured() as cap:
            data = converter.convert()
    except Exception as exc:
        raise DeployError(f"TensorFlow Lite conversion failed: {exc}\n{cap.text[-2000:]}") from exc
    log.debug("converter output: %s", cap.text.strip())
    log.info("converted to TensorFlow Lite (%s): %d bytes", model_type, len(data))
    return bytes(data)
