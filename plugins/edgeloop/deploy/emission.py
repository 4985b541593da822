"""Emission: the generated C++ text, all through ``string.Template``.

Whole files are templates under ``templates/*.tmpl`` (rendered with
:func:`render`); the repeated pieces inside them (a constant array, a
parameter struct, a tensor pointer, one operator's step) are the
``Template`` constants below. Python values become C++ literals only through
the ``c_*`` functions, so there is one place that decides how a float, an
int32 or a string is written.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from string import Template

import numpy as np

from edgeloop.deploy.lowering import (
    STRUCT_FIELDS,
    Arena,
    Arg,
    ConstArray,
    Double,
    Lowered,
    LoweredGraph,
    Named,
    ParamStruct,
)
from edgeloop.deploy.memory_plan import MemoryPlan

FLT_MAX = "3.402823466e+38f"

CTYPES = {
    "int8": "int8_t",
    "float32": "float",
    "int32": "int32_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
}

CONST_ARRAY = Template("const ${ctype} ${name}[${length}] = {\n${values}\n};")
PARAM_STRUCT = Template("const el::${kind} ${name} = {${fields}};")
TENSOR_MACRO = Template("#define T${index} reinterpret_cast<${ctype}*>(tensor_arena + ${offset})")
CALL = Template("${function}(${args});")
NO_CODE = Template("/* ${op}: output aliases the input buffer */")
STEP = Template(
    "  /* op ${k}: ${op} -> tensor ${out} ${shape} */\n"
    "  ${call}\n"
    "  EL_DUMP(${k}, T${out}, ${size}, ${dump_kind});"
)
DUMP_KINDS = {"int8": 0, "float32": 1}  # el_dump's element kinds; anything else: 2 (int32)


@functools.cache
def _template_text(name: str) -> str:
    return resources.files("edgeloop.deploy").joinpath("templates", name).read_text("utf-8")


def render(name: str, **values: object) -> str:
    """Render ``templates/NAME``; every ``${key}`` must be given (KeyError otherwise)."""
    return Template(_template_text(name)).substitute({k: str(v) for k, v in values.items()})


# ------------------------------------------------------------------ C++ literals


def c_float(v: float) -> str:
    """A ``float`` literal; an infinite value becomes +-FLT_MAX (a clamp that never binds)."""
    v = float(v)
    if math.isnan(v):
        raise ValueError("NaN has no C++ literal: the lowering must refuse non-finite constants")
    if math.isinf(v):
        return FLT_MAX if v > 0 else "-" + FLT_MAX
    s = f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def c_double(v: float) -> str:
    """A ``double`` literal (shortest round-trip form)."""
    if not math.isfinite(v):
        raise ValueError(f"{v} has no C++ literal")
    return repr(float(v))


def c_int(v: int, ctype: str = "int32_t") -> str:
    v = int(v)
    return "INT32_MIN" if ctype == "int32_t" and v == -(2**31) else str(v)


def c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def c_values(values: np.ndarray, ctype: str) -> str:
    """The elements of an array initializer, several per line."""
    flat = values.reshape(-1)
    if ctype == "float":
        items = [c_float(v) for v in flat.astype(np.float32)]
    else:
        items = [c_int(v, ctype) for v in flat]
    per_line = 12 if ctype == "float" else 20
    return "\n".join(
        "    " + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)
    )


def c_arg(arg: Arg) -> str:
    """A kernel call argument."""
    if arg is None:
        return "nullptr"
    if isinstance(arg, bool):
        return "true" if arg else "false"
    if isinstance(arg, Arena):
        return f"T{arg.index}"
    if isinstance(arg, Named):
        return arg.name
    if isinstance(arg, Double):
        return c_double(arg.value)
    if isinstance(arg, float):
        return c_float(arg)
    return c_int(arg)


def _c_field(v: object) -> str:
    if isinstance(v, list | tuple):
        return "{" + ", ".join(c_int(x) for x in v) + "}"
    if isinstance(v, float | np.floating):
        return c_float(float(v))
    return c_int(v)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pieces


def const_array(name: str, a: ConstArray) -> str:
    ctype = CTYPES[a.dtype]
    length = max(a.values.size, 1)
    return CONST_ARRAY.substitute(
        ctype=ctype, name=name, length=length, values=c_values(a.values, ctype)
    )


def param_struct(name: str, s: ParamStruct) -> str:
    fields = ", ".join(_c_field(s.values[f]) for f in STRUCT_FIELDS[s.kind])
    return PARAM_STRUCT.substitute(kind=s.kind, name=name, fields=fields)


def step(k: int, low: Lowered, lowered: LoweredGraph) -> str:
    out = low.op.outputs[0]
    t = lowered.graph.tensors[out]
    if low.kernel:
        call = CALL.substitute(function=low.kernel, args=", ".join(c_arg(a) for a in low.args))
    else:
        call = NO_CODE.substitute(op=low.op.name)
    return STEP.substitute(
        k=k,
        op=low.op.name,
        out=out,
        shape=list(t.shape),
        call=call,
        size=t.size,
        dump_kind=DUMP_KINDS.get(t.dtype.name, 2),
    )


# ------------------------------------------------------------------ the model's sources


@dataclass(frozen=True)
class ModelSources:
    cpp: str  # tflite-model/trained_model_compiled.cpp
    header: str  # tflite-model/trained_model_compiled.h


def emit_model(lowered: LoweredGraph, plan: MemoryPlan) -> ModelSources:
    """The model's C++: constants, the arena and its tensor pointers, straight-line invoke()."""
    graph = lowered.graph
    inp = graph.tensors[graph.inputs[0]]
    out = graph.tensors[graph.outputs[0]]
    consts = lowered.constants
    macros = [
        TENSOR_MACRO.substitute(index=t, ctype=CTYPES[graph.tensors[t].dtype.name], offset=off)
        for t, off in sorted(plan.offsets.items())
    ]
    header = render(
        "trained_model_compiled.h.tmpl",
        arena_size=plan.arena_size,
        input_elements=inp.size,
        output_elements=out.size,
        operator_count=len(graph.operators),
        input_int8=int(inp.dtype.name == "int8"),
        output_int8=int(out.dtype.name == "int8"),
        input_ctype=CTYPES[inp.dtype.name],
        output_ctype=CTYPES[out.dtype.name],
    )
    cpp = render(
        "trained_model_compiled.cpp.tmpl",
        model_type=lowered.model_type,
        operator_count=len(graph.operators),
        arena_size=plan.arena_size,
        constant_bytes=consts.nbytes,
        constants="\n".join(const_array(n, a) for n, a in consts.arrays.items()),
        params="\n".join(param_struct(n, s) for n, s in consts.structs.items()),
        tensor_macros="\n".join(macros),
        input_index=graph.inputs[0],
        output_index=graph.outputs[0],
        steps="\n".join(step(k, low, lowered) for k, low in enumerate(lowered.ops)),
    )
    return ModelSources(cpp, header)
