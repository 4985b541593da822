"""Compile the generated library, run it, and compare with the reference interpreter.

int8: the int8 output tensor must equal TensorFlow Lite Micro's on every sample.
float32: every output must be within 1e-5 (times max(1, |reference|)) of the
TensorFlow Lite interpreter's. On a mismatch the debug build (which dumps
every operator's output) is compared with the reference's intermediate
tensors to name the first differing operator.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeloop.deploy.codegen import CompiledModel
from edgeloop.deploy.errors import DeployError, VerificationError

log = logging.getLogger(__name__)

STRICT_CXXFLAGS = "-std=c++11 -O2 -Wall -Wextra -Werror"
FLOAT_TOLERANCE = 1e-5


@dataclass
class VerifyResult:
    outputs: np.ndarray  # compiled outputs, one row per sample
    reference: np.ndarray
    max_abs_diff: float
    latency_us: float
    code_bytes: int
    rodata_bytes: int
    samples: int


def format_samples(x: np.ndarray) -> str:
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in flat)


def quantize_like_cpp(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The example's quantization: roundf(x / scale) + zp in float32, clamped to int8."""
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v).astype(np.float64) + 0.5)
    return np.clip(r.astype(np.int64) + zero_point, -128, 127).astype(np.int8)


def _run(
    cmd: list[str], cwd: Path, what: str, stdin: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise DeployError(f"{what}: {cmd[0]} not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"{what}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise DeployError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def compile_with_make(folder: Path, target: str = "example", cxx: str | None = None) -> Path:
    cxx = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise DeployError(f"no C++ compiler: {cxx!r} not found on PATH (set CXX)")
    jobs = str(min(os.cpu_count() or 1, 4))
    _run(
        ["make", "-s", f"-j{jobs}", target, f"CXX={cxx}", f"CXXFLAGS={STRICT_CXXFLAGS}"],
        folder,
        f"compiling the library ({cxx} {STRICT_CXXFLAGS})",
    )
    return folder / target


def run_example(binary: Path, x: np.ndarray, int_output: bool) -> np.ndarray:
    proc = _run([str(binary)], binary.parent, "running the example", stdin=format_samples(x))
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    if len(rows) != len(x):
        raise DeployError(f"the example printed {len(rows)} lines for {len(x)} samples")
    if int_output:
        return np.array([[int(v) for v in r] for r in rows], dtype=np.int64)
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)


def measure_latency(binary: Path, sample: np.ndarray) -> float:
    """Microseconds per inference of the compiled example on one sample."""
    text = format_samples(sample[None, ...])
    n = 20
    while True:
        proc = _run([str(binary), "--bench", str(n)], binary.parent, "latency run", stdin=text)
        us = float(proc.stdout.split()[1])
        if us * n >= 2e5 or n >= 1_000_000:
            return us
        n = min(1_000_000, max(n * 2, int(3e5 / max(us, 1e-3))))


def section_sizes(objects: list[Path]) -> tuple[int, int]:
    """(code, read-only data) bytes of compiled objects, from `size -A`."""
    if shutil.which("size") is None:
        return 0, 0
    proc = _run(["size", "-A", *map(str, objects)], objects[0].parent, "size")
    code = rodata = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            if parts[0].startswith(".text"):
                code += int(parts[1])
            elif parts[0].startswith(".rodata"):
                rodata += int(parts[1])
    return code, rodata


# ----------------------------------------------------------------- references


class Reference:
    """Runs the .tflite model with TFLM (int8) or the TF Lite interpreter (float32)."""

    def __init__(self, tflite: bytes, model_type: str, preserve: bool = False) -> None:
        self.model_type = model_type
        if model_type == "int8":
            from tflite_micro import runtime

            config = (
                runtime.InterpreterConfig.kPreserveAllTensors
                if preserve
                else runtime.InterpreterConfig.kAllocationRecording
            )
            self.tflm = runtime.Interpreter.from_bytes(tflite, intrepreter_config=config)
        else:
            from edgeloop.deploy.convert import native_output_captured, quiet_tensorflow

            quiet_tensorflow()
            import tensorflow as tf

            with native_output_captured():
                self.tfl = tf.lite.Interpreter(
                    model_content=tflite, num_threads=1, experimental_preserve_all_tensors=preserve
                )
                self.tfl.allocate_tensors()
            self.in_index = self.tfl.get_input_details()[0]["index"]
            self.in_shape = self.tfl.get_input_details()[0]["shape"]
            self.out_index = self.tfl.get_output_details()[0]["index"]

    def run(self, sample: np.ndarray) -> np.ndarray:
        if self.model_type == "int8":
            self.tflm.set_input(sample[None, ...], 0)
            self.tflm.invoke()
            return np.asarray(self.tflm.get_output(0)).reshape(-1)
        self.tfl.set_tensor(self.in_index, sample.reshape(self.in_shape).astype(np.float32))
        self.tfl.invoke()
        return np.asarray(self.tfl.get_tensor(self.out_index)).reshape(-1)

    def tensor(self, index: int) -> np.ndarray:
        if self.model_type == "int8":
            return np.asarray(self.tflm.GetTensor(index, 0)["tensor_data"]).reshape(-1)
        return np.asarray(self.tfl.get_tensor(index)).reshape(-1)


def tflm_arena_bytes(tflite: bytes, sample: np.ndarray) -> int:
    """Total arena TensorFlow Lite Micro uses for the model (its RecordingMicroAllocator)."""
    return tflm_arena_usage(tflite, sample)["total"]


def tflm_arena_usage(tflite: bytes, sample: np.ndarray) -> dict[str, int]:
    """TFLM's arena: ``total``, ``head`` (planned tensor buffers), ``tail`` (runtime data)."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite)
    from edgeloop.deploy.convert import native_output_captured

    interp.set_input(sample[None, ...], 0)
    interp.invoke()
    with native_output_captured() as cap:
        interp.print_allocations()
    text = cap.text
    usage: dict[str, int] = {}
    for line in text.splitlines():
        for key in ("total", "head", "tail"):
            marker = f"Arena allocation {key}"
            if marker in line:
                usage[key] = int(line.split(marker)[1].split()[0])
    if "total" not in usage:
        raise DeployError(f"could not read TFLM's arena usage from: {text[:500]!r}")
    return usage


def reference_inputs(model: CompiledModel, x: np.ndarray) -> np.ndarray:
    """What the example feeds the model: quantized like the C++ code for an int8 input."""
    inp = model.input_tensor
    if inp.dtype.name == "int8":
        return quantize_like_cpp(x, inp.scale, inp.zero_point)
    return np.asarray(x, dtype=np.float32)


def _close(a: np.ndarray, b: np.ndarray, model_type: str) -> np.ndarray:
    if model_type == "int8":
        return a == b
    return np.abs(a - b) <= FLOAT_TOLERANCE * np.maximum(1.0, np.abs(b))


def _first_differing_op(
    folder: Path,
    model: CompiledModel,
    tflite: bytes,
    model_type: str,
    sample: np.ndarray,
    ref_input: np.ndarray,
) -> str:
    debug = compile_with_make(folder, "example_debug")
    proc = subprocess.run(
        [str(debug)],
        cwd=folder,
        input=format_samples(sample[None, ...]),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    dumps: dict[int, np.ndarray] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("#op "):
            parts = line.split()
            dumps[int(parts[1])] = np.array([float(v) for v in parts[2:]])
    ref = Reference(tflite, model_type, preserve=True)
    ref.run(ref_input)
    for k, t in enumerate(model.op_outputs):
        expected = ref.tensor(t).astype(np.float64)
        got = dumps.get(k)
        if got is None or got.shape != expected.shape:
            return f"#{k} {model.op_names[k]} (no output dumped)"
        bad = ~_close(got, expected, model_type)
        if bad.any():
            i = int(np.argmax(bad))
            return (
                f"#{k} {model.op_names[k]} (output tensor {t}, element {i}: "
                f"got {got[i]:g}, expected {expected[i]:g})"
            )
    return "none of the operators individually (only the final output differs)"


def verify_library(
    folder: Path, model: CompiledModel, tflite: bytes, model_type: str, x: np.ndarray
) -> VerifyResult:
    """Compile ``folder`` with make, run the held-out samples ``x`` and compare."""
    t0 = time.monotonic()
    binary = compile_with_make(folder)
    log.info("compiled the library in %.1f s", time.monotonic() - t0)
    got = run_example(binary, x, model.output_tensor.dtype.name == "int8")
    ref = Reference(tflite, model_type)
    ref_inputs = reference_inputs(model, x)
    expected = np.array([ref.run(s) for s in ref_inputs]).astype(np.float64)
    if got.shape != expected.shape:
        raise VerificationError(
            f"verification failed: compiled output shape {got.shape} differs from the "
            f"reference {expected.shape}"
        )
    ok = _close(got.astype(np.float64), expected, model_type).all(axis=1)
    reference_name = "TensorFlow Lite Micro" if model_type == "int8" else "the TF Lite interpreter"
    if not ok.all():
        k = int(np.argmin(ok))
        op = _first_differing_op(folder, model, tflite, model_type, x[k], ref_inputs[k])
        raise VerificationError(
            f"verification failed: held-out sample {k} differs from {reference_name} "
            f"(got {got[k].tolist()}, expected {expected[k].tolist()}); first differing op: {op}",
            sample=k,
            op=op,
        )
    max_diff = float(np.abs(got - expected).max()) if got.size else 0.0
    log.info("verified %d samples against %s (max |diff| %.3g)", len(x), reference_name, max_diff)
    latency = measure_latency(binary, x[0])
    objs = [
        folder / "build/tflite-model/trained_model_compiled.o",
        folder / "build/edge-impulse-sdk/classifier/ei_run_classifier.o",
    ]
    code, rodata = section_sizes(objs)
    return VerifyResult(got, expected, max_diff, latency, code, rodata, len(x))
