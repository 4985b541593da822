"""Lay out the C++ library folder and zip it (reference layout of the seed's C++ library).

Generated files are rendered from ``templates/*.tmpl`` by
:func:`edgeloop.deploy.emission.render`; the example, the classifier API and
the build files (``Makefile.tmpl`` is named so only to ship as package data)
are copied unchanged, like the kernels.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeloop.deploy.codegen import CompiledModel
from edgeloop.deploy.emission import c_double, c_string, render

KERNEL_FILES = ("el_fixedpoint.h", "el_kernels.h")
KERNELS_DIR = "edge-impulse-sdk/kernels"
LAYOUT = (
    "CMakeLists.txt",
    "Makefile",
    "README.md",
    "main.cpp",
    "edge-impulse-sdk/classifier/ei_run_classifier.h",
    "edge-impulse-sdk/classifier/ei_run_classifier.cpp",
    *(f"{KERNELS_DIR}/{k}" for k in KERNEL_FILES),
    "model-parameters/model_metadata.h",
    "model-parameters/model_variables.h",
    "tflite-model/trained_model_compiled.cpp",
    "tflite-model/trained_model_compiled.h",
    "tflite-model/trained_model.tflite",
)
SOURCES = (
    "main.cpp",
    "edge-impulse-sdk/classifier/ei_run_classifier.cpp",
    "tflite-model/trained_model_compiled.cpp",
)


@dataclass(frozen=True)
class LibraryInfo:
    labels: tuple[str, ...]
    model_type: str
    input_shape: tuple[int, ...]
    version: str
    project: str = "edgeloop"


def metadata_h(model: CompiledModel, info: LibraryInfo) -> str:
    inp, out = model.input_tensor, model.output_tensor
    in_q = inp.dtype.name == "int8"
    out_q = out.dtype.name == "int8"
    return render(
        "model_metadata.h.tmpl",
        project=c_string(info.project),
        version=c_string(info.version),
        model_type=c_string(info.model_type),
        model_int8=int(info.model_type == "int8"),
        label_count=len(info.labels),
        labels=", ".join(c_string(label) for label in info.labels),
        input_size=inp.size,
        input_rank=len(info.input_shape),
        input_shape=", ".join(str(s) for s in info.input_shape),
        output_size=out.size,
        input_scale=c_double(inp.scale) if in_q else "1.0",
        input_zero_point=inp.zero_point if in_q else 0,
        output_scale=c_double(out.scale) if out_q else "1.0",
        output_zero_point=out.zero_point if out_q else 0,
        arena_size=model.arena_size,
        weights_bytes=model.weights_bytes,
    )


def variables_h(info: LibraryInfo) -> str:
    return render(
        "model_variables.h.tmpl", labels=", ".join(c_string(label) for label in info.labels)
    )


def readme_md(model: CompiledModel, info: LibraryInfo) -> str:
    return render(
        "README.md.tmpl",
        model_type=info.model_type,
        labels=", ".join(info.labels),
        arena_size=model.arena_size,
        input_elements=model.input_tensor.size,
    )


def _static(name: str) -> str:
    """A file copied into the library as it is (no template substitution)."""
    return resources.files("edgeloop.deploy").joinpath("templates", name).read_text("utf-8")


def write_library(folder: Path, model: CompiledModel, info: LibraryInfo, tflite: bytes) -> None:
    """Write every file of the library under ``folder`` (created if missing)."""
    files: dict[str, str | bytes] = {
        "CMakeLists.txt": _static("CMakeLists.txt"),
        "Makefile": _static("Makefile.tmpl"),
        "README.md": readme_md(model, info),
        "main.cpp": _static("main.cpp"),
        "edge-impulse-sdk/classifier/ei_run_classifier.h": _static("ei_run_classifier.h"),
        "edge-impulse-sdk/classifier/ei_run_classifier.cpp": _static("ei_run_classifier.cpp"),
        "model-parameters/model_metadata.h": metadata_h(model, info),
        "model-parameters/model_variables.h": variables_h(info),
        "tflite-model/trained_model_compiled.cpp": model.cpp,
        "tflite-model/trained_model_compiled.h": model.header,
        "tflite-model/trained_model.tflite": tflite,
    }
    kernels = resources.files("edgeloop.deploy").joinpath("kernels")
    for k in KERNEL_FILES:
        files[f"{KERNELS_DIR}/{k}"] = kernels.joinpath(k).read_text("utf-8")
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def zip_folder(folder: Path, zip_path: Path) -> None:
    """Zip ``folder``'s files (relative paths, sorted, fixed timestamps) to ``zip_path``."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for root, _dirs, names in sorted(os.walk(folder)):
            for name in sorted(names):
                full = Path(root) / name
                rel = full.relative_to(folder).as_posix()
                zi = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
                zi.external_attr = 0o644 << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(zi, full.read_bytes())
