"""Lowering: each TFLite operator becomes one kernel call with its constants.

:data:`OPERATORS` is the operator table: a TFLite builtin name maps to the
function that lowers it, and it is also the definition of what is supported
(:data:`SUPPORTED_OPS`, which the unsupported-operator error lists). A
lowering function checks the operator's variant (types, rank, fused
activation), registers the constant data the kernel needs (weights, biases,
quantized multipliers, a parameter struct) in :class:`Constants`, and returns
a :class:`Lowered` call plus what the memory plan may do with its buffers
(alias, in place, overlap). Nothing here produces C++ text: that is
:mod:`edgeloop.deploy.emission`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeloop.deploy import quantization as q
from edgeloop.deploy.errors import DeployError, UnsupportedOperatorError
from edgeloop.deploy.memory_plan import overlap_delta
from edgeloop.deploy.tflite_graph import Graph, Operator, Tensor

MODEL_TYPES = ("int8", "float32")
SUPPORTED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
KERNEL_BLOCK = 32  # el::kBlock: output channels accumulated together in the convolutions

# Fields of the kernels' parameter structs (el_kernels.h), in declaration order.
STRUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "ConvParams": (
        *("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c"),
        *("filter_h", "filter_w", "filter_in_c", "stride_h", "stride_w", "dil_h", "dil_w"),
        *("pad_h", "pad_w", "depth_multiplier", "in_offset", "out_offset"),
        *("act_min", "act_max", "fact_min", "fact_max"),
    ),
    "PoolParams": (
        *("batches", "in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w"),
        *("stride_h", "stride_w", "pad_h", "pad_w", "act_min", "act_max", "fact_min", "fact_max"),
    ),
    "FcParams": (
        *("batches", "in_depth", "out_depth", "per_channel", "in_offset", "filter_offset"),
        *("out_offset", "act_min", "act_max", "fact_min", "fact_max"),
    ),
    "AddParams": (
        *("dims", "stride1", "stride2", "in1_offset", "in2_offset", "out_offset", "left_shift"),
        *("in1_multiplier", "in2_multiplier", "out_multiplier", "in1_shift", "in2_shift"),
        *("out_shift", "act_min", "act_max", "fact_min", "fact_max"),
    ),
    "MeanParams": (
        *("in_dims", "reduce", "count", "same_quant", "in_zp", "out_zp", "multiplier", "shift"),
    ),
}


# ------------------------------------------------------------------ kernel call arguments


@dataclass(frozen=True)
class Arena:
    """A non-constant tensor: its bytes in the arena, wherever the memory plan puts them."""

    index: int


@dataclass(frozen=True)
class Named:
    """A constant array or parameter struct registered in :class:`Constants`."""

    name: str


@dataclass(frozen=True)
class Double:
    """A ``double`` argument (a plain Python float is passed as ``float``)."""

    value: float


# int (also the element count or a zero point), float (C float), bool, None (null pointer)
Arg = Arena | Named | Double | bool | int | float | None


@dataclass
class Lowered:
    """One operator lowered to one kernel call, and how the memory plan may place its output."""

    op: Operator
    kernel: str  # the C++ function called; "" when the operator needs no code (an alias)
    args: tuple[Arg, ...] = ()
    inplace_input: int | None = None  # input tensor that may share the output buffer
    inplace_alt: int | None = None  # second candidate (ADD: the other input)
    alias_input: int | None = None  # RESHAPE: output is the input's bytes
    # The output may start at (dying) input + d for any d <= overlap_delta (bytes;
    # negative: before the input): no write reaches an input byte read later.
    overlap_input: int | None = None
    overlap_delta: int | None = None


# ------------------------------------------------------------------ constants


@dataclass
class ConstArray:
    dtype: str  # numpy dtype name of the elements: int8, int32, float32, ...
    values: np.ndarray
    nbytes: int  # counted in the library's weights bytes


@dataclass
class ParamStruct:
    kind: str  # a key of STRUCT_FIELDS
    values: dict[str, object]  # field -> int, float or list of ints


@dataclass
class Constants:
    """The constant data of the generated code, in the order it is registered."""

    arrays: dict[str, ConstArray] = field(default_factory=dict)
    structs: dict[str, ParamStruct] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Weights, biases, quantization arrays and parameter structs (4 bytes per field)."""
        arrays = sum(a.nbytes for a in self.arrays.values())
        structs = sum(
            4 * (len(v) if isinstance(v, list | tuple) else 1)
            for s in self.structs.values()
            for v in s.values.values()
        )
        return arrays + structs

    def tensor(self, t: Tensor) -> Named:
        """A constant tensor of the graph, as stored in the ``.tflite``."""
        if t.data is None:
            raise ValueError(f"tensor {t.name!r} is not constant")
        return self.tensor_as(f"t{t.index}", t, t.data)

    def tensor_as(self, name: str, t: Tensor, data: np.ndarray) -> Named:
        """A constant tensor stored in another layout (e.g. weights transposed to HWIO)."""
        if name not in self.arrays:
            self.arrays[name] = ConstArray(t.dtype.name, np.asarray(data), t.nbytes)
        return Named(name)

    def array(self, name: str, dtype: str, values: list[int] | np.ndarray) -> Named:
        arr = np.asarray(values)
        self.arrays[name] = ConstArray(dtype, arr, len(arr) * np.dtype(dtype).itemsize)
        return Named(name)

    def struct(self, name: str, kind: str, values: dict[str, object]) -> Named:
        missing = [f for f in STRUCT_FIELDS[kind] if f not in values]
        extra = [f for f in values if f not in STRUCT_FIELDS[kind]]
        if missing or extra:
            raise ValueError(f"{kind} {name}: missing fields {missing}, unknown fields {extra}")
        self.structs[name] = ParamStruct(kind, dict(values))
        return Named(name)


# ------------------------------------------------------------------ lowering context


def unsupported(op: Operator, detail: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(op.name, op.index, SUPPORTED_OPS, detail)


@dataclass
class Context:
    """What every lowering function needs: the graph, the model type, the constants so far."""

    graph: Graph
    model_type: str
    constants: Constants = field(default_factory=Constants)

    @property
    def int8(self) -> bool:
        return self.model_type == "int8"

    def t(self, i: int) -> Tensor:
        return self.graph.tensors[i]

    def ref(self, i: int) -> Named | Arena:
        """Tensor i as a kernel argument: its constant array, or its place in the arena."""
        t = self.t(i)
        if t.is_constant:
            return self.constants.tensor(t)
        return Arena(i)

    def optional_ref(self, op: Operator, k: int) -> Named | Arena | None:
        """Input k of ``op`` (a bias), or None when it is absent."""
        if len(op.inputs) > k and op.inputs[k] >= 0:
            return self.ref(op.inputs[k])
        return None

    def check_types(self, op: Operator, tensors: list[int], dtype: str) -> None:
        for i in tensors:
            if self.t(i).dtype.name != dtype:
                raise unsupported(
                    op, f"tensor {self.t(i).name!r} is {self.t(i).dtype.name}, expected {dtype}"
                )

    def activation(self, op: Operator) -> str:
        act = op.options.get("activation", "NONE")
        if act not in SUPPORTED_ACTIVATIONS:
            raise unsupported(
                op, f"fused activation {act} (supported: {', '.join(SUPPORTED_ACTIVATIONS)})"
            )
        return act

    def act_fields(self, op: Operator, out: Tensor) -> dict[str, object]:
        """The clamp of the fused activation: int8 bounds or float bounds (the other zero)."""
        act = self.activation(op)
        if self.int8:
            lo, hi = q.activation_range_int8(act, out.scale, out.zero_point)
            return {"act_min": lo, "act_max": hi, "fact_min": 0.0, "fact_max": 0.0}
        flo, fhi = q.activation_range_float(act)
        return {"act_min": 0, "act_max": 0, "fact_min": flo, "fact_max": fhi}

    def params(self, op: Operator, kind: str, values: dict[str, object]) -> Named:
        return self.constants.struct(f"op{op.index}_params", kind, values)

    def multipliers(self, op: Operator, mults: list[int], shifts: list[int]) -> tuple[Named, Named]:
        return (
            self.constants.array(f"op{op.index}_mult", "int32", mults),
            self.constants.array(f"op{op.index}_shift", "int32", shifts),
        )


def compute_padding(
    stride: int, dilation: int, in_size: int, filter_size: int, out_size: int, padding: str
) -> int:
    """Padding before the first element (TFLite's ComputePaddingHeightWidth)."""
    if padding != "SAME":
        return 0
    effective = (filter_size - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total, 0) // 2


def _geometry(f: dict[str, object]) -> dict[str, int]:
    return {k: v for k, v in f.items() if isinstance(v, int) and not isinstance(v, bool)}


# ------------------------------------------------------------------ operators


def lower_fully_connected(ctx: Context, op: Operator) -> Lowered:
    inp, filt = ctx.t(op.inputs[0]), ctx.t(op.inputs[1])
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    out = ctx.t(op.outputs[0])
    if not filt.is_constant or (has_bias and not ctx.t(op.inputs[2]).is_constant):
        raise unsupported(op, "weights must be constant")
    if op.options.get("weights_format", 0) != 0:
        raise unsupported(op, "shuffled weights format")
    out_depth, in_depth = filt.shape[0], filt.shape[-1]
    f: dict[str, object] = {
        "batches": inp.size // in_depth,
        "in_depth": in_depth,
        "out_depth": out_depth,
    }
    f.update(ctx.act_fields(op, out))
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8")
        if has_bias:
            ctx.check_types(op, [op.inputs[2]], "int32")
        per_channel = filt.scales is not None and len(filt.scales) > 1
        if per_channel:
            mults, shifts = q.per_channel_multipliers(inp.scale, filt.scales, out.scale, out_depth)
        else:
            m, sh = q.fully_connected_multiplier(inp.scale, filt.scale, out.scale)
            mults, shifts = [m], [sh]
        mult, shift = ctx.multipliers(op, mults, shifts)
        f.update(
            per_channel=int(per_channel),
            in_offset=-inp.zero_point,
            filter_offset=-filt.zero_point,
            out_offset=out.zero_point,
        )
        p = ctx.params(op, "FcParams", f)
        bias = ctx.optional_ref(op, 2)
        args: tuple[Arg, ...] = (p, ctx.ref(op.inputs[0]), ctx.ref(op.inputs[1]), bias, mult)
        args += (shift, ctx.ref(op.outputs[0]))
        return Lowered(op, "el::fully_connected_s8", args)
    ctx.check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "float32")
    f.update(per_channel=0, in_offset=0, filter_offset=0, out_offset=0)
    p = ctx.params(op, "FcParams", f)
    bias = ctx.optional_ref(op, 2)
    args = (p, ctx.ref(op.inputs[0]), ctx.ref(op.inputs[1]), bias, ctx.ref(op.outputs[0]))
    return Lowered(op, "el::fully_connected_f32", args)


def _lower_conv(ctx: Context, op: Operator, depthwise: bool) -> Lowered:
    inp, filt = ctx.t(op.inputs[0]), ctx.t(op.inputs[1])
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    out = ctx.t(op.outputs[0])
    if len(inp.shape) != 4 or len(out.shape) != 4 or len(filt.shape) != 4:
        raise unsupported(op, "only 4-D NHWC tensors")
    if filt.data is None or (has_bias and not ctx.t(op.inputs[2]).is_constant):
        raise unsupported(op, "weights must be constant")
    o = op.options
    n, ih, iw, ic = inp.shape
    _, oh, ow, oc = out.shape
    fh, fw = filt.shape[1], filt.shape[2]
    f: dict[str, object] = {
        "batches": n,
        "in_h": ih,
        "in_w": iw,
        "in_c": ic,
        "out_h": oh,
        "out_w": ow,
        "out_c": oc,
        "filter_h": fh,
        "filter_w": fw,
        "filter_in_c": 1 if depthwise else filt.shape[3],
        "stride_h": o["stride_h"],
        "stride_w": o["stride_w"],
        "dil_h": o["dilation_h"],
        "dil_w": o["dilation_w"],
        "pad_h": compute_padding(o["stride_h"], o["dilation_h"], ih, fh, oh, o["padding"]),
        "pad_w": compute_padding(o["stride_w"], o["dilation_w"], iw, fw, ow, o["padding"]),
        "depth_multiplier": oc // ic if depthwise else 1,
    }
    if not depthwise and ic % filt.shape[3] != 0:
        raise unsupported(op, "input channels not a multiple of filter channels")
    f.update(ctx.act_fields(op, out))
    kind = "depthwise_conv" if depthwise else "conv"
    if not depthwise and filt.shape[3] == ic:
        # groups == 1: OHWI -> HWIO so the kernel's inner loop runs over output channels
        kind = "conv_hwio"
        hwio = np.ascontiguousarray(filt.data.transpose(1, 2, 3, 0))
        weights: Named | Arena = ctx.constants.tensor_as(f"t{filt.index}_hwio", filt, hwio)
    else:
        if depthwise and oc == ic:
            kind = "depthwise_conv_m1"
        weights = ctx.ref(op.inputs[1])
    bias = ctx.optional_ref(op, 2)
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8")
        if has_bias:
            ctx.check_types(op, [op.inputs[2]], "int32")
        mults, shifts = q.per_channel_multipliers(inp.scale, filt.scales, out.scale, oc)
        mult, shift = ctx.multipliers(op, mults, shifts)
        f.update(in_offset=-inp.zero_point, out_offset=out.zero_point)
        p = ctx.params(op, "ConvParams", f)
        args: tuple[Arg, ...] = (p, ctx.ref(op.inputs[0]), weights, bias, mult, shift)
        low = Lowered(op, f"el::{kind}_s8", (*args, ctx.ref(op.outputs[0])))
    else:
        ctx.check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "float32")
        f.update(in_offset=0, out_offset=0)
        p = ctx.params(op, "ConvParams", f)
        args = (p, ctx.ref(op.inputs[0]), weights, bias, ctx.ref(op.outputs[0]))
        low = Lowered(op, f"el::{kind}_f32", args)
    if kind in ("conv_hwio", "depthwise_conv_m1") and not inp.is_constant:
        low.overlap_input = op.inputs[0]
        low.overlap_delta = overlap_delta(
            _geometry(f), ic, oc, KERNEL_BLOCK, kind == "depthwise_conv_m1", inp.dtype.itemsize
        )
    return low


def lower_conv_2d(ctx: Context, op: Operator) -> Lowered:
    return _lower_conv(ctx, op, depthwise=False)


def lower_depthwise_conv_2d(ctx: Context, op: Operator) -> Lowered:
    return _lower_conv(ctx, op, depthwise=True)


def _lower_pool(ctx: Context, op: Operator, is_max: bool) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if len(inp.shape) != 4:
        raise unsupported(op, "only 4-D NHWC tensors")
    o = op.options
    n, ih, iw, c = inp.shape
    _, oh, ow, _ = out.shape
    f: dict[str, object] = {
        "batches": n,
        "in_h": ih,
        "in_w": iw,
        "channels": c,
        "out_h": oh,
        "out_w": ow,
        "filter_h": o["filter_h"],
        "filter_w": o["filter_w"],
        "stride_h": o["stride_h"],
        "stride_w": o["stride_w"],
        "pad_h": compute_padding(o["stride_h"], 1, ih, o["filter_h"], oh, o["padding"]),
        "pad_w": compute_padding(o["stride_w"], 1, iw, o["filter_w"], ow, o["padding"]),
    }
    f.update(ctx.act_fields(op, out))
    p = ctx.params(op, "PoolParams", f)
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "int8")
        kernel = "el::max_pool_s8" if is_max else "el::average_pool_s8"
        low = Lowered(op, kernel, (p, ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0])))
    else:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "float32")
        args = (p, ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0]), is_max)
        low = Lowered(op, "el::pool_f32", args)
    if not inp.is_constant:
        low.overlap_input = op.inputs[0]
        low.overlap_delta = overlap_delta(_geometry(f), c, c, 1, True, inp.dtype.itemsize)
    return low


def lower_max_pool_2d(ctx: Context, op: Operator) -> Lowered:
    return _lower_pool(ctx, op, is_max=True)


def lower_average_pool_2d(ctx: Context, op: Operator) -> Lowered:
    return _lower_pool(ctx, op, is_max=False)


def lower_reshape(ctx: Context, op: Operator) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if inp.dtype != out.dtype or inp.size != out.size:
        raise unsupported(op, "reshape must keep type and element count")
    if inp.is_constant:
        return Lowered(op, "memcpy", (ctx.ref(op.outputs[0]), ctx.ref(op.inputs[0]), out.nbytes))
    return Lowered(op, "", alias_input=op.inputs[0])


def lower_softmax(ctx: Context, op: Operator) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    beta = float(op.options.get("beta", 1.0))
    depth = inp.shape[-1]
    outer = inp.size // depth
    io = (ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0]), outer, depth)
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "int8")
        if out.zero_point != -128 or q.f32(out.scale) != q.f32(1.0 / 256):
            raise unsupported(op, "int8 output must have scale 1/256 and zero point -128")
        mult, shift, diff_min = q.softmax_params(beta, inp.scale)
        low = Lowered(op, "el::softmax_s8", (*io, mult, shift, diff_min))
    else:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "float32")
        low = Lowered(op, "el::softmax_f32", (*io, beta))
    low.inplace_input = op.inputs[0]
    return low


def lower_logistic(ctx: Context, op: Operator) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    io = (ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0]), inp.size)
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "int8")
        if out.zero_point != -128:
            raise unsupported(op, "int8 output must have zero point -128")
        mult, shift, radius = q.logistic_params(inp.scale)
        low = Lowered(op, "el::logistic_s8", (*io, inp.zero_point, radius, mult, shift))
    else:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "float32")
        low = Lowered(op, "el::logistic_f32", io)
    low.inplace_input = op.inputs[0]
    return low


def lower_add(ctx: Context, op: Operator) -> Lowered:
    a, b, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if max(len(a.shape), len(b.shape), len(out.shape)) > 4:
        raise unsupported(op, "more than 4 dimensions")
    dims = [1] * (4 - len(out.shape)) + list(out.shape)

    def strides(shape: tuple[int, ...]) -> list[int]:
        s = [1] * (4 - len(shape)) + list(shape)
        st = [0, 0, 0, 0]
        acc = 1
        for d in range(3, -1, -1):
            st[d] = 0 if (s[d] == 1 and dims[d] != 1) else acc
            acc *= s[d]
        return st

    f: dict[str, object] = {"dims": dims, "stride1": strides(a.shape), "stride2": strides(b.shape)}
    f.update(ctx.act_fields(op, out))
    candidates = [
        i
        for i, t in ((op.inputs[0], a), (op.inputs[1], b))
        if t.shape == out.shape and not t.is_constant
    ]
    ctx.check_types(
        op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8" if ctx.int8 else "float32"
    )
    if ctx.int8:
        f.update(in1_offset=-a.zero_point, in2_offset=-b.zero_point, out_offset=out.zero_point)
        f.update(q.add_params(a.scale, b.scale, out.scale))
        kernel = "el::add_s8"
    else:
        f.update(dict.fromkeys(("in1_offset", "in2_offset", "out_offset", "left_shift"), 0))
        f.update(dict.fromkeys(("in1_multiplier", "in2_multiplier", "out_multiplier"), 0))
        f.update(dict.fromkeys(("in1_shift", "in2_shift", "out_shift"), 0))
        kernel = "el::add_f32"
    p = ctx.params(op, "AddParams", f)
    args = (p, ctx.ref(op.inputs[0]), ctx.ref(op.inputs[1]), ctx.ref(op.outputs[0]))
    return Lowered(
        op,
        kernel,
        args,
        inplace_input=candidates[0] if candidates else None,
        inplace_alt=candidates[1] if len(candidates) > 1 else None,
    )


def lower_mean(ctx: Context, op: Operator) -> Lowered:
    inp, axis_t, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    if axis_t.data is None:
        raise unsupported(op, "axis must be constant")
    if len(inp.shape) > 4:
        raise unsupported(op, "more than 4 dimensions")
    rank = len(inp.shape)
    pad = 4 - rank
    in_dims = [1] * pad + list(inp.shape)
    reduce = [0, 0, 0, 0]
    for ax in np.asarray(axis_t.data).reshape(-1):
        a = int(ax) + rank if int(ax) < 0 else int(ax)
        reduce[a + pad] = 1
    count = int(np.prod([in_dims[d] for d in range(4) if reduce[d]]))
    f: dict[str, object] = {"in_dims": in_dims, "reduce": reduce, "count": count}
    if ctx.int8:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "int8")
        same = inp.zero_point == out.zero_point and q.f32(inp.scale) == q.f32(out.scale)
        m, s = q.rescale_multiplier(inp.scale, out.scale)
        f.update(
            same_quant=int(same), in_zp=inp.zero_point, out_zp=out.zero_point, multiplier=m, shift=s
        )
        kernel = "el::mean_s8"
    else:
        ctx.check_types(op, [op.inputs[0], op.outputs[0]], "float32")
        f.update(same_quant=0, in_zp=0, out_zp=0, multiplier=0, shift=0)
        kernel = "el::mean_f32"
    p = ctx.params(op, "MeanParams", f)
    return Lowered(op, kernel, (p, ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0])))


def lower_quantize(ctx: Context, op: Operator) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if out.dtype.name != "int8":
        raise unsupported(op, f"output type {out.dtype.name} (only int8)")
    io = (ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0]), inp.size)
    if inp.dtype.name == "float32":
        scale = float(q.f32(out.scale))
        return Lowered(op, "el::quantize_f32_s8", (*io, scale, out.zero_point))
    if inp.dtype.name == "int8":
        m, s = q.rescale_multiplier(inp.scale, out.scale)
        args = (*io, inp.zero_point, out.zero_point, m, s)
        return Lowered(op, "el::requantize_s8", args, inplace_input=op.inputs[0])
    raise unsupported(op, f"input type {inp.dtype.name}")


def lower_dequantize(ctx: Context, op: Operator) -> Lowered:
    inp, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if inp.dtype.name != "int8" or out.dtype.name != "float32":
        raise unsupported(op, f"{inp.dtype.name} -> {out.dtype.name} (only int8 -> float32)")
    scale = Double(float(np.float64(q.f32(inp.scale))))
    args = (ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0]), inp.size, scale, inp.zero_point)
    return Lowered(op, "el::dequantize_s8_f32", args)


LoweringFn = Callable[[Context, Operator], Lowered]

# The operator table: what is supported, and how each operator is lowered.
OPERATORS: dict[str, LoweringFn] = {
    "FULLY_CONNECTED": lower_fully_connected,
    "CONV_2D": lower_conv_2d,
    "DEPTHWISE_CONV_2D": lower_depthwise_conv_2d,
    "MAX_POOL_2D": lower_max_pool_2d,
    "AVERAGE_POOL_2D": lower_average_pool_2d,
    "RESHAPE": lower_reshape,
    "SOFTMAX": lower_softmax,
    "ADD": lower_add,
    "MEAN": lower_mean,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
    "LOGISTIC": lower_logistic,
}
SUPPORTED_OPS: tuple[str, ...] = tuple(OPERATORS)


# ------------------------------------------------------------------ the graph


def _non_finite(values: np.ndarray) -> str:
    v = np.asarray(values, dtype=np.float64)
    nan, inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
    return f"{nan} NaN and {inf} infinite of {v.size} values"


def check_finite(graph: Graph) -> None:
    """Refuse constants (weights, biases) and quantization scales that are NaN or infinite.

    Names the tensor and the first operator that reads it (a float tensor
    would otherwise be emitted as ``nan``, and an int8 one would give a NaN
    multiplier).
    """
    for op in graph.operators:
        for i in (*op.inputs, *op.outputs):
            if i < 0:
                continue
            t = graph.tensors[i]
            where = f"operator #{op.index} {op.name}: tensor {t.name!r}"
            if t.data is not None and t.dtype.kind == "f" and not np.isfinite(t.data).all():
                raise DeployError(
                    f"{where} holds non-finite weights ({_non_finite(t.data)}); "
                    "the model's weights must be finite numbers"
                )
            if t.scales is not None and not np.isfinite(t.scales).all():
                raise DeployError(
                    f"{where} has a non-finite quantization scale ({_non_finite(t.scales)}); "
                    "the model's weights must be finite numbers"
                )


@dataclass
class LoweredGraph:
    graph: Graph
    model_type: str
    ops: list[Lowered]
    constants: Constants


def lower_graph(graph: Graph, model_type: str) -> LoweredGraph:
    """Lower every operator of ``graph`` (DeployError on anything unsupported or non-finite)."""
    if model_type not in MODEL_TYPES:
        raise DeployError(f"model type must be int8 or float32, got {model_type!r}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise DeployError(
            f"only single-input single-output models are supported "
            f"(got {len(graph.inputs)} inputs, {len(graph.outputs)} outputs)"
        )
    for op in graph.operators:  # name an unsupported operator before anything else
        if op.name not in OPERATORS:
            raise unsupported(op, "no kernel for this operator")
    check_finite(graph)
    ctx = Context(graph, model_type)
    ops = [OPERATORS[op.name](ctx, op) for op in graph.operators]
    return LoweredGraph(graph, model_type, ops, ctx.constants)
