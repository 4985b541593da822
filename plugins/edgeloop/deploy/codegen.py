"""Generate plain C++ for a TFLite graph: const weights, a static arena, straight-line invoke().

The integer parameters (quantized multipliers, shifts, activation ranges,
softmax and logistic constants) are computed here, with the same formulas
and the same float/double precision as TensorFlow Lite Micro's Prepare
functions, and stored as constants; the kernels only do integer arithmetic.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edgeloop.deploy.errors import DeployError, UnsupportedOperatorError
from edgeloop.deploy.tflite_graph import Graph, Operator, Tensor

log = logging.getLogger(__name__)

SUPPORTED_OPS: tuple[str, ...] = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "RESHAPE",
    "SOFTMAX",
    "ADD",
    "MEAN",
    "QUANTIZE",
    "DEQUANTIZE",
    "LOGISTIC",
)
SUPPORTED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
# Ops whose output may overwrite their (dying) input: element i of the output
# depends only on elements the kernel has already read.
INPLACE_OPS = ("ADD", "LOGISTIC", "SOFTMAX", "QUANTIZE")
ALIGN = 4
KERNEL_BLOCK = 32  # el::kBlock: output channels accumulated together in the convolutions
FLT_MAX = "3.402823466e+38f"

_CTYPES = {
    "int8": "int8_t",
    "float32": "float",
    "int32": "int32_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
}

_STRUCT_FIELDS = {
    "ConvParams": [
        "batches",
        "in_h",
        "in_w",
        "in_c",
        "out_h",
        "out_w",
        "out_c",
        "filter_h",
        "filter_w",
        "filter_in_c",
        "stride_h",
        "stride_w",
        "dil_h",
        "dil_w",
        "pad_h",
        "pad_w",
        "depth_multiplier",
        "in_offset",
        "out_offset",
        "act_min",
        "act_max",
        "fact_min",
        "fact_max",
    ],
    "PoolParams": [
        "batches",
        "in_h",
        "in_w",
        "channels",
        "out_h",
        "out_w",
        "filter_h",
        "filter_w",
        "stride_h",
        "stride_w",
        "pad_h",
        "pad_w",
        "act_min",
        "act_max",
        "fact_min",
        "fact_max",
    ],
    "FcParams": [
        "batches",
        "in_depth",
        "out_depth",
        "per_channel",
        "in_offset",
        "filter_offset",
        "out_offset",
        "act_min",
        "act_max",
        "fact_min",
        "fact_max",
    ],
    "AddParams": [
        "dims",
        "stride1",
        "stride2",
        "in1_offset",
        "in2_offset",
        "out_offset",
        "left_shift",
        "in1_multiplier",
        "in2_multiplier",
        "out_multiplier",
        "in1_shift",
        "in2_shift",
        "out_shift",
        "act_min",
        "act_max",
        "fact_min",
        "fact_max",
    ],
    "MeanParams": [
        "in_dims",
        "reduce",
        "count",
        "same_quant",
        "in_zp",
        "out_zp",
        "multiplier",
        "shift",
    ],
}


# --------------------------------------------------------------------------- arithmetic


def _round_half_away(x: float) -> int:
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = q * 2^shift with q a Q0.31 integer."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def activation_range_int8(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output (f / scale in float32)."""

    def quantize(f: float) -> int:
        return zero_point + _round_half_away(float(_f32(f) / _f32(scale)))

    if activation == "RELU":
        return max(-128, quantize(0.0)), 127
    if activation == "RELU6":
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    return -128, 127


def activation_range_float(activation: str) -> tuple[str, str]:
    return {
        "RELU": ("0.0f", FLT_MAX),
        "RELU6": ("0.0f", "6.0f"),
        "RELU_N1_TO_1": ("-1.0f", "1.0f"),
    }.get(activation, ("-" + FLT_MAX, FLT_MAX))


def compute_padding(
    stride: int, dilation: int, in_size: int, filter_size: int, out_size: int, padding: str
) -> int:
    if padding != "SAME":
        return 0
    effective = (filter_size - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total, 0) // 2


def _fmt_float(v: float) -> str:
    v = float(v)
    if math.isinf(v):
        return FLT_MAX if v > 0 else "-" + FLT_MAX
    s = f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def _fmt_values(values: np.ndarray, ctype: str) -> str:
    flat = values.reshape(-1)
    if ctype == "float":
        items = [_fmt_float(v) for v in flat.astype(np.float32)]
    elif ctype == "int32_t":
        items = [str(int(v)) if v != -(2**31) else "INT32_MIN" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = []
    per_line = 12 if ctype == "float" else 20
    for i in range(0, len(items), per_line):
        lines.append("    " + ", ".join(items[i : i + per_line]) + ",")
    return "\n".join(lines)


# --------------------------------------------------------------------------- lowering


@dataclass
class Lowered:
    op: Operator
    call: str  # C++ statement(s)
    inplace_input: int | None = None  # input tensor that may share the output buffer
    inplace_alt: int | None = None  # second candidate (ADD: the other input)
    alias_input: int | None = None  # RESHAPE: output is the input's bytes
    # The output may start at (dying) input + d for any d <= overlap_delta (bytes;
    # negative: before the input): no write reaches an input byte read later.
    overlap_input: int | None = None
    overlap_delta: int | None = None


def _first_valid(origin: np.ndarray, dil: int, taps: int, size: int) -> np.ndarray:
    """Input coordinate of the first valid filter tap (or a huge value if none)."""
    out = np.full(origin.shape, 1 << 40, dtype=np.int64)
    for k in range(taps - 1, -1, -1):
        c = origin + dil * k
        out = np.where((c >= 0) & (c < size), c, out)
    return out


def overlap_delta(
    p: dict[str, int], in_c: int, out_c: int, block: int, channelwise: bool, esize: int
) -> int:
    """Largest byte offset of the output relative to its input that the kernel tolerates.

    The kernels visit output pixels in (batch, y, x) order and write ascending
    addresses, so an output placed ``delta`` bytes from its input (``delta``
    may be negative: the output starts before the input) is safe when every
    write lands below every input byte read after it. ``channelwise`` kernels
    (depthwise, pooling) read input channel block j of the window and then
    write output channel block j; the others (convolution) read every input
    channel of the window before writing each block of ``block`` output
    channels. Any delta <= the returned value is safe.
    """
    oy = np.arange(p["out_h"]) * p["stride_h"] - p["pad_h"]
    ox = np.arange(p["out_w"]) * p["stride_w"] - p["pad_w"]
    iy = _first_valid(oy, p.get("dil_h", 1), p["filter_h"], p["in_h"])
    ix = _first_valid(ox, p.get("dil_w", 1), p["filter_w"], p["in_w"])
    b = np.arange(p["batches"])
    huge = np.int64(1) << 50
    ws = (b[:, None, None] * p["in_h"] + iy[None, :, None]) * p["in_w"] + ix[None, None, :]
    ws = np.where(
        (iy[None, :, None] >= (1 << 40)) | (ix[None, None, :] >= (1 << 40)), huge, ws * in_c
    ).reshape(-1)
    n = len(ws)
    if n == 0:
        return 0
    suffix = np.minimum.accumulate(ws[::-1])[::-1]
    later = np.append(suffix[1:], huge)  # lowest input element read by any later pixel
    pix = np.arange(n, dtype=np.int64)
    bound = int(np.min(later - (pix + 1) * out_c))  # last write of p below later reads
    nblocks = -(-out_c // block)
    if nblocks > 1:
        if channelwise:  # block j+1 of the same pixel reads from ws + c0(j+1)
            bound = min(bound, int(np.min(ws - pix * out_c)))
        else:  # block j+1 of the same pixel reads the whole window again
            bound = min(bound, int(np.min(ws - (pix * out_c + (nblocks - 1) * block))))
    return bound * esize


@dataclass
class Emitter:
    graph: Graph
    model_type: str
    consts: dict[str, str] = field(default_factory=dict)  # name -> definition
    const_bytes: int = 0
    params: list[str] = field(default_factory=list)

    def const_tensor(self, t: Tensor) -> str:
        name = f"t{t.index}"
        if name not in self.consts:
            ctype = _CTYPES[t.dtype.name]
            assert t.data is not None
            self.consts[name] = (
                f"const {ctype} {name}[{max(t.size, 1)}] = {{\n{_fmt_values(t.data, ctype)}\n}};"
            )
            self.const_bytes += t.nbytes
        return name

    def const_data(self, name: str, t: Tensor, data: np.ndarray) -> str:
        """A constant tensor stored in another layout (e.g. weights transposed to HWIO)."""
        if name not in self.consts:
            ctype = _CTYPES[t.dtype.name]
            self.consts[name] = (
                f"const {ctype} {name}[{max(t.size, 1)}] = {{\n{_fmt_values(data, ctype)}\n}};"
            )
            self.const_bytes += t.nbytes
        return name

    def const_array(self, name: str, ctype: str, values: list[int] | np.ndarray) -> str:
        arr = np.asarray(values)
        self.consts[name] = f"const {ctype} {name}[{len(arr)}] = {{\n{_fmt_values(arr, ctype)}\n}};"
        self.const_bytes += len(arr) * (4 if ctype in ("int32_t", "float") else 1)
        return name

    def struct(self, name: str, kind: str, values: dict[str, object]) -> str:
        parts = []
        for f in _STRUCT_FIELDS[kind]:
            v = values[f]
            if isinstance(v, list | tuple):
                parts.append("{" + ", ".join(str(int(x)) for x in v) + "}")
            elif isinstance(v, str):
                parts.append(v)
            else:
                parts.append(str(int(v)))  # type: ignore[call-overload]
        self.params.append(f"const el::{kind} {name} = {{{', '.join(parts)}}};")
        self.const_bytes += 4 * sum(
            len(values[f]) if isinstance(values[f], list | tuple) else 1  # type: ignore[arg-type]
            for f in _STRUCT_FIELDS[kind]
        )
        return name


def _unsupported(op: Operator, detail: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(op.name, op.index, SUPPORTED_OPS, detail)


class Lowerer:
    def __init__(self, graph: Graph, model_type: str) -> None:
        self.g = graph
        self.model_type = model_type
        self.em = Emitter(graph, model_type)
        self.act_dtype = "int8" if model_type == "int8" else "float32"

    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def ref(self, i: int) -> str:
        """Expression for tensor i's data (constant array or arena pointer macro)."""
        t = self.t(i)
        if t.is_constant:
            return self.em.const_tensor(t)
        return f"T{i}"

    def _check_types(self, op: Operator, tensors: list[int], dtype: str) -> None:
        for i in tensors:
            if self.t(i).dtype.name != dtype:
                raise _unsupported(
                    op, f"tensor {self.t(i).name!r} is {self.t(i).dtype.name}, expected {dtype}"
                )

    def _activation(self, op: Operator) -> str:
        act = op.options.get("activation", "NONE")
        if act not in SUPPORTED_ACTIVATIONS:
            raise _unsupported(
                op, f"fused activation {act} (supported: {', '.join(SUPPORTED_ACTIVATIONS)})"
            )
        return act

    def _act_fields(self, op: Operator, out: Tensor) -> dict[str, object]:
        act = self._activation(op)
        if self.model_type == "int8":
            lo, hi = activation_range_int8(act, out.scale, out.zero_point)
            return {"act_min": lo, "act_max": hi, "fact_min": "0.0f", "fact_max": "0.0f"}
        flo, fhi = activation_range_float(act)
        return {"act_min": 0, "act_max": 0, "fact_min": flo, "fact_max": fhi}

    def _per_channel_mults(
        self, op: Operator, inp: Tensor, filt: Tensor, out: Tensor, channels: int
    ) -> tuple[str, str]:
        fs = filt.scales if filt.scales is not None else np.zeros(1, np.float32)
        mults, shifts = [], []
        for c in range(channels):
            s = fs[c] if len(fs) > 1 else fs[0]
            real = float(np.float64(inp.scale) * np.float64(s) / np.float64(out.scale))
            m, sh = quantize_multiplier(real)
            mults.append(m)
            shifts.append(sh)
        return (
            self.em.const_array(f"op{op.index}_mult", "int32_t", mults),
            self.em.const_array(f"op{op.index}_shift", "int32_t", shifts),
        )

    def lower(self, op: Operator) -> Lowered:
        fn = getattr(self, "_" + op.name.lower(), None)
        if op.name not in SUPPORTED_OPS or fn is None:
            raise _unsupported(op, "no kernel for this operator")
        return fn(op)

    # -- ops ---------------------------------------------------------------

    def _fully_connected(self, op: Operator) -> Lowered:
        inp, filt = self.t(op.inputs[0]), self.t(op.inputs[1])
        bias = self.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out = self.t(op.outputs[0])
        if not filt.is_constant or (bias is not None and not bias.is_constant):
            raise _unsupported(op, "weights must be constant")
        if op.options.get("weights_format", 0) != 0:
            raise _unsupported(op, "shuffled weights format")
        out_depth, in_depth = filt.shape[0], filt.shape[-1]
        batches = inp.size // in_depth
        f = {"batches": batches, "in_depth": in_depth, "out_depth": out_depth}
        f.update(self._act_fields(op, out))
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8")
            if bias is not None:
                self._check_types(op, [op.inputs[2]], "int32")
            per_channel = filt.scales is not None and len(filt.scales) > 1
            if per_channel:
                mult, shift = self._per_channel_mults(op, inp, filt, out, out_depth)
            else:
                # GetQuantizedConvolutionMultipler: float product, then double.
                prod = np.float64(_f32(inp.scale) * _f32(filt.scale))
                m, sh = quantize_multiplier(float(prod / np.float64(out.scale)))
                mult = self.em.const_array(f"op{op.index}_mult", "int32_t", [m])
                shift = self.em.const_array(f"op{op.index}_shift", "int32_t", [sh])
            f.update(
                per_channel=int(per_channel),
                in_offset=-inp.zero_point,
                filter_offset=-filt.zero_point,
                out_offset=out.zero_point,
            )
            p = self.em.struct(f"op{op.index}_params", "FcParams", f)
            b = self.ref(op.inputs[2]) if bias is not None else "nullptr"
            call = (
                f"el::fully_connected_s8({p}, {self.ref(op.inputs[0])}, "
                f"{self.ref(op.inputs[1])}, {b}, {mult}, {shift}, {self.ref(op.outputs[0])});"
            )
        else:
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "float32")
            f.update(per_channel=0, in_offset=0, filter_offset=0, out_offset=0)
            p = self.em.struct(f"op{op.index}_params", "FcParams", f)
            b = self.ref(op.inputs[2]) if bias is not None else "nullptr"
            call = (
                f"el::fully_connected_f32({p}, {self.ref(op.inputs[0])}, "
                f"{self.ref(op.inputs[1])}, {b}, {self.ref(op.outputs[0])});"
            )
        return Lowered(op, call)

    def _conv_common(self, op: Operator, depthwise: bool) -> Lowered:
        inp, filt = self.t(op.inputs[0]), self.t(op.inputs[1])
        bias = self.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out = self.t(op.outputs[0])
        if len(inp.shape) != 4 or len(out.shape) != 4 or len(filt.shape) != 4:
            raise _unsupported(op, "only 4-D NHWC tensors")
        if not filt.is_constant or (bias is not None and not bias.is_constant):
            raise _unsupported(op, "weights must be constant")
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
            raise _unsupported(op, "input channels not a multiple of filter channels")
        f.update(self._act_fields(op, out))
        kind = "depthwise_conv" if depthwise else "conv"
        if not depthwise and filt.shape[3] == ic:
            # groups == 1: OHWI -> HWIO so the kernel's inner loop runs over output channels
            kind = "conv_hwio"
            assert filt.data is not None
            weights = self.em.const_data(
                f"t{filt.index}_hwio", filt, np.ascontiguousarray(filt.data.transpose(1, 2, 3, 0))
            )
        elif depthwise and oc == ic:
            kind = "depthwise_conv_m1"
            weights = self.ref(op.inputs[1])
        else:
            weights = self.ref(op.inputs[1])
        b = self.ref(op.inputs[2]) if bias is not None else "nullptr"
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8")
            if bias is not None:
                self._check_types(op, [op.inputs[2]], "int32")
            mult, shift = self._per_channel_mults(op, inp, filt, out, oc)
            f.update(in_offset=-inp.zero_point, out_offset=out.zero_point)
            p = self.em.struct(f"op{op.index}_params", "ConvParams", f)
            call = (
                f"el::{kind}_s8({p}, {self.ref(op.inputs[0])}, {weights}, "
                f"{b}, {mult}, {shift}, {self.ref(op.outputs[0])});"
            )
        else:
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "float32")
            f.update(in_offset=0, out_offset=0)
            p = self.em.struct(f"op{op.index}_params", "ConvParams", f)
            call = (
                f"el::{kind}_f32({p}, {self.ref(op.inputs[0])}, {weights}, "
                f"{b}, {self.ref(op.outputs[0])});"
            )
        low = Lowered(op, call)
        if kind in ("conv_hwio", "depthwise_conv_m1") and not inp.is_constant:
            geo = {k: int(v) for k, v in f.items() if isinstance(v, int)}
            low.overlap_input = op.inputs[0]
            low.overlap_delta = overlap_delta(
                geo, ic, oc, KERNEL_BLOCK, kind == "depthwise_conv_m1", inp.dtype.itemsize
            )
        return low

    def _conv_2d(self, op: Operator) -> Lowered:
        return self._conv_common(op, depthwise=False)

    def _depthwise_conv_2d(self, op: Operator) -> Lowered:
        return self._conv_common(op, depthwise=True)

    def _pool(self, op: Operator, is_max: bool) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if len(inp.shape) != 4:
            raise _unsupported(op, "only 4-D NHWC tensors")
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
        f.update(self._act_fields(op, out))
        p = self.em.struct(f"op{op.index}_params", "PoolParams", f)
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.outputs[0]], "int8")
            kind = "max_pool_s8" if is_max else "average_pool_s8"
            call = f"el::{kind}({p}, {self.ref(op.inputs[0])}, {self.ref(op.outputs[0])});"
        else:
            self._check_types(op, [op.inputs[0], op.outputs[0]], "float32")
            call = (
                f"el::pool_f32({p}, {self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{'true' if is_max else 'false'});"
            )
        low = Lowered(op, call)
        if not inp.is_constant:
            geo = {k: int(v) for k, v in f.items() if isinstance(v, int)}
            low.overlap_input = op.inputs[0]
            low.overlap_delta = overlap_delta(geo, c, c, 1, True, inp.dtype.itemsize)
        return low

    def _max_pool_2d(self, op: Operator) -> Lowered:
        return self._pool(op, True)

    def _average_pool_2d(self, op: Operator) -> Lowered:
        return self._pool(op, False)

    def _reshape(self, op: Operator) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if inp.dtype != out.dtype or inp.size != out.size:
            raise _unsupported(op, "reshape must keep type and element count")
        if inp.is_constant:
            call = f"memcpy({self.ref(op.outputs[0])}, {self.ref(op.inputs[0])}, {out.nbytes});"
            return Lowered(op, call)
        return Lowered(
            op, "/* RESHAPE: output aliases the input buffer */", alias_input=op.inputs[0]
        )

    def _softmax(self, op: Operator) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        beta = float(op.options.get("beta", 1.0))
        depth = inp.shape[-1]
        outer = inp.size // depth
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.outputs[0]], "int8")
            if out.zero_point != -128 or _f32(out.scale) != _f32(1.0 / 256):
                raise _unsupported(op, "int8 output must have scale 1/256 and zero point -128")
            real = min(
                float(np.float64(_f32(beta)) * np.float64(_f32(inp.scale)) * (1 << 26)),
                float((1 << 31) - 1),
            )
            mult, shift = quantize_multiplier(real)
            radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << 26) / (1 << shift))
            diff_min = -int(radius)
            call = (
                f"el::softmax_s8({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{outer}, {depth}, {mult}, {shift}, {diff_min});"
            )
        else:
            self._check_types(op, [op.inputs[0], op.outputs[0]], "float32")
            call = (
                f"el::softmax_f32({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{outer}, {depth}, {_fmt_float(beta)});"
            )
        return Lowered(op, call, inplace_input=op.inputs[0])

    def _logistic(self, op: Operator) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.outputs[0]], "int8")
            if out.zero_point != -128:
                raise _unsupported(op, "int8 output must have zero point -128")
            real = float(np.float64(_f32(inp.scale)) * float(1 << 27))
            q, shift = math.frexp(real)
            mult = _round_half_away(q * (1 << 31))
            if mult >= (1 << 31):
                mult -= 1 << 32  # static_cast<int32_t> wrap, as in the reference
            radius = math.floor(1.0 * ((1 << 4) - 1) * (1 << 27) / (2.0**shift))
            call = (
                f"el::logistic_s8({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{inp.size}, {inp.zero_point}, {int(radius)}, {mult}, {shift});"
            )
        else:
            self._check_types(op, [op.inputs[0], op.outputs[0]], "float32")
            call = (
                f"el::logistic_f32({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{inp.size});"
            )
        return Lowered(op, call, inplace_input=op.inputs[0])

    def _add(self, op: Operator) -> Lowered:
        a, b, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if max(len(a.shape), len(b.shape), len(out.shape)) > 4:
            raise _unsupported(op, "more than 4 dimensions")
        dims = [1] * (4 - len(out.shape)) + list(out.shape)

        def strides(shape: tuple[int, ...]) -> list[int]:
            s = [1] * (4 - len(shape)) + list(shape)
            st = [0, 0, 0, 0]
            acc = 1
            for d in range(3, -1, -1):
                st[d] = 0 if (s[d] == 1 and dims[d] != 1) else acc
                acc *= s[d]
            return st

        f: dict[str, object] = {
            "dims": dims,
            "stride1": strides(a.shape),
            "stride2": strides(b.shape),
        }
        f.update(self._act_fields(op, out))
        candidates = [
            i
            for i, t in ((op.inputs[0], a), (op.inputs[1], b))
            if t.shape == out.shape and not t.is_constant
        ]
        inplace = candidates[0] if candidates else None
        inplace_alt = candidates[1] if len(candidates) > 1 else None
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "int8")
            left_shift = 20
            twice_max = 2 * float(np.float64(max(_f32(a.scale), _f32(b.scale))))
            m1, s1 = quantize_multiplier(float(np.float64(_f32(a.scale))) / twice_max)
            m2, s2 = quantize_multiplier(float(np.float64(_f32(b.scale))) / twice_max)
            mo, so = quantize_multiplier(
                twice_max / ((1 << left_shift) * float(np.float64(_f32(out.scale))))
            )
            f.update(
                in1_offset=-a.zero_point,
                in2_offset=-b.zero_point,
                out_offset=out.zero_point,
                left_shift=left_shift,
                in1_multiplier=m1,
                in2_multiplier=m2,
                out_multiplier=mo,
                in1_shift=s1,
                in2_shift=s2,
                out_shift=so,
            )
            kind = "add_s8"
        else:
            self._check_types(op, [op.inputs[0], op.inputs[1], op.outputs[0]], "float32")
            f.update(
                {
                    k: 0
                    for k in (
                        "in1_offset",
                        "in2_offset",
                        "out_offset",
                        "left_shift",
                        "in1_multiplier",
                        "in2_multiplier",
                        "out_multiplier",
                        "in1_shift",
                        "in2_shift",
                        "out_shift",
                    )
                }
            )
            kind = "add_f32"
        p = self.em.struct(f"op{op.index}_params", "AddParams", f)
        call = (
            f"el::{kind}({p}, {self.ref(op.inputs[0])}, {self.ref(op.inputs[1])}, "
            f"{self.ref(op.outputs[0])});"
        )
        return Lowered(op, call, inplace_input=inplace, inplace_alt=inplace_alt)

    def _mean(self, op: Operator) -> Lowered:
        inp, axis_t, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if axis_t.data is None:
            raise _unsupported(op, "axis must be constant")
        if len(inp.shape) > 4:
            raise _unsupported(op, "more than 4 dimensions")
        rank = len(inp.shape)
        pad = 4 - rank
        in_dims = [1] * pad + list(inp.shape)
        reduce = [0, 0, 0, 0]
        for ax in np.asarray(axis_t.data).reshape(-1):
            a = int(ax) + rank if int(ax) < 0 else int(ax)
            reduce[a + pad] = 1
        count = int(np.prod([in_dims[d] for d in range(4) if reduce[d]]))
        f: dict[str, object] = {"in_dims": in_dims, "reduce": reduce, "count": count}
        if self.model_type == "int8":
            self._check_types(op, [op.inputs[0], op.outputs[0]], "int8")
            same = inp.zero_point == out.zero_point and _f32(inp.scale) == _f32(out.scale)
            m, s = quantize_multiplier(
                float(np.float64(_f32(inp.scale)) / np.float64(_f32(out.scale)))
            )
            f.update(
                same_quant=int(same),
                in_zp=inp.zero_point,
                out_zp=out.zero_point,
                multiplier=m,
                shift=s,
            )
            kind = "mean_s8"
        else:
            self._check_types(op, [op.inputs[0], op.outputs[0]], "float32")
            f.update(same_quant=0, in_zp=0, out_zp=0, multiplier=0, shift=0)
            kind = "mean_f32"
        p = self.em.struct(f"op{op.index}_params", "MeanParams", f)
        return Lowered(op, f"el::{kind}({p}, {self.ref(op.inputs[0])}, {self.ref(op.outputs[0])});")

    def _quantize(self, op: Operator) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if out.dtype.name != "int8":
            raise _unsupported(op, f"output type {out.dtype.name} (only int8)")
        if inp.dtype.name == "float32":
            call = (
                f"el::quantize_f32_s8({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{inp.size}, {_fmt_float(float(_f32(out.scale)))}, {out.zero_point});"
            )
            return Lowered(op, call)
        if inp.dtype.name == "int8":
            m, s = quantize_multiplier(
                float(np.float64(_f32(inp.scale)) / np.float64(_f32(out.scale)))
            )
            call = (
                f"el::requantize_s8({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
                f"{inp.size}, {inp.zero_point}, {out.zero_point}, {m}, {s});"
            )
            return Lowered(op, call, inplace_input=op.inputs[0])
        raise _unsupported(op, f"input type {inp.dtype.name}")

    def _dequantize(self, op: Operator) -> Lowered:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if inp.dtype.name != "int8" or out.dtype.name != "float32":
            raise _unsupported(op, f"{inp.dtype.name} -> {out.dtype.name} (only int8 -> float32)")
        scale = repr(float(np.float64(_f32(inp.scale))))
        call = (
            f"el::dequantize_s8_f32({self.ref(op.inputs[0])}, {self.ref(op.outputs[0])}, "
            f"{inp.size}, {scale}, {inp.zero_point});"
        )
        return Lowered(op, call)


# --------------------------------------------------------------------------- memory plan


@dataclass
class MemoryPlan:
    offsets: dict[int, int]  # tensor index -> arena offset
    arena_size: int
    naive_size: int  # every activation in its own buffer
    buffers: list[dict[str, int]]


def plan_memory(
    graph: Graph, lowered: list[Lowered], *, inplace: bool = True, align: int = ALIGN
) -> MemoryPlan:
    """Static arena plan.

    Tensors are grouped first: a RESHAPE output aliases its input, an
    element-wise op may write over its dying input (in place), and a
    convolution or pooling may write its output overlapping its dying input
    from a safe offset on. Each group is one buffer (members at fixed
    offsets inside it, live from its first member's birth to its last
    member's death); buffers whose lifetimes do not overlap share bytes,
    placed greedily by size at the lowest aligned free offset.
    """
    n_ops = len(graph.operators)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in graph.inputs:
        first[i] = 0
        last[i] = 0
    for k, op in enumerate(graph.operators):
        for i in op.inputs:
            if i >= 0 and not graph.tensors[i].is_constant:
                first.setdefault(i, k)
                last[i] = max(last.get(i, k), k)
        for o in op.outputs:
            first[o] = min(first.get(o, k), k)
            last[o] = max(last.get(o, k), k)
    for o in graph.outputs:
        last[o] = n_ops

    parent: dict[int, int] = {t: t for t in first}
    rel: dict[int, int] = {t: 0 for t in first}  # offset inside the parent
    g_first = dict(first)
    g_last = dict(last)
    g_size = {t: graph.tensors[t].nbytes for t in first}

    def find(t: int) -> tuple[int, int]:
        off = 0
        while parent[t] != t:
            off += rel[t]
            t = parent[t]
        return t, off

    def place(x: int, out: int, delta: int) -> None:
        """Put out's group so that out starts ``delta`` bytes after x."""
        rx, ox = find(x)
        ro, oo = find(out)
        if rx == ro:
            return
        shift = ox + delta - oo  # offset of ro's base inside rx's group
        if shift >= 0:
            parent[ro], rel[ro], root, other, sh = rx, shift, rx, ro, shift
        else:
            parent[rx], rel[rx], root, other, sh = ro, -shift, ro, rx, -shift
        g_first[root] = min(g_first[root], g_first[other])
        g_last[root] = max(g_last[root], g_last[other])
        g_size[root] = max(g_size[root], sh + g_size[other])

    for low in lowered:  # aliases first: they extend lifetimes
        if low.alias_input is not None:
            place(low.alias_input, low.op.outputs[0], 0)
    if inplace:
        for k, low in enumerate(lowered):
            out = low.op.outputs[0]
            x, delta = low.inplace_input, 0
            if x is not None and low.inplace_alt is not None and g_last[find(x)[0]] != k:
                x = low.inplace_alt  # the first input lives on: try the other one
            if x is None and low.overlap_input is not None:
                x = low.overlap_input
                delta = (min(int(low.overlap_delta or 0), 0) // align) * align  # round down
                if -delta >= graph.tensors[out].nbytes:
                    continue  # no gain over separate buffers
            if x is None or graph.tensors[x].is_constant:
                continue
            rx, _ = find(x)
            others = {
                find(i)[0]
                for i in low.op.inputs
                if i >= 0 and i != x and not graph.tensors[i].is_constant
            }
            if (
                g_last[rx] == k
                and rx not in others
                and low.op.inputs.count(x) == 1
                and graph.tensors[x].dtype == graph.tensors[out].dtype
                and (
                    delta < 0
                    or low.overlap_input is not None
                    or g_size[rx] >= graph.tensors[out].nbytes
                )
            ):
                place(x, out, delta)

    roots = sorted({find(t)[0] for t in first})
    order = sorted(roots, key=lambda r: (-g_size[r], g_first[r], r))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets_root: dict[int, int] = {}
    for r in order:
        size = g_size[r]
        busy = sorted(
            (off, sz) for off, sz, f0, l0 in placed if f0 <= g_last[r] and g_first[r] <= l0
        )
        offset = 0
        for off, sz in busy:
            if offset + size <= off:
                break
            offset = max(offset, -(-(off + sz) // align) * align)
        offsets_root[r] = offset
        placed.append((offset, size, g_first[r], g_last[r]))
    arena = max((off + sz for off, sz, _, _ in placed), default=0)
    arena = -(-arena // align) * align
    naive = sum(-(-graph.tensors[t].nbytes // align) * align for t in first)
    buffers = [
        {"offset": offsets_root[r], "size": g_size[r], "first": g_first[r], "last": g_last[r]}
        for r in roots
    ]
    offsets = {}
    for t in first:
        r, off = find(t)
        offsets[t] = offsets_root[r] + off
    return MemoryPlan(offsets, arena, naive, buffers)


# --------------------------------------------------------------------------- sources


@dataclass
class CompiledModel:
    cpp: str
    header: str
    arena_size: int
    naive_arena_size: int
    weights_bytes: int
    op_names: list[str]
    op_outputs: list[int]  # output tensor index per op (for debug dumps)
    input_tensor: Tensor
    output_tensor: Tensor


def generate(graph: Graph, model_type: str, *, inplace: bool = True) -> CompiledModel:
    """Lower every operator, plan the arena and return the model's C++ sources."""
    if model_type not in ("int8", "float32"):
        raise DeployError(f"model type must be int8 or float32, got {model_type!r}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise DeployError(
            f"only single-input single-output models are supported "
            f"(got {len(graph.inputs)} inputs, {len(graph.outputs)} outputs)"
        )
    lowerer = Lowerer(graph, model_type)
    lowered = [lowerer.lower(op) for op in graph.operators]
    plan = plan_memory(graph, lowered, inplace=inplace)
    em = lowerer.em
    inp = graph.tensors[graph.inputs[0]]
    out = graph.tensors[graph.outputs[0]]
    in_ct, out_ct = _CTYPES[inp.dtype.name], _CTYPES[out.dtype.name]

    macros = []
    for t, off in sorted(plan.offsets.items()):
        ct = _CTYPES[graph.tensors[t].dtype.name]
        macros.append(f"#define T{t} reinterpret_cast<{ct}*>(tensor_arena + {off})")
    body = []
    for k, low in enumerate(lowered):
        o = low.op.outputs[0]
        ot = graph.tensors[o]
        body.append(f"  /* op {k}: {low.op.name} -> tensor {o} {list(ot.shape)} */")
        body.append(f"  {low.call}")
        kind = {"int8": 0, "float32": 1}.get(ot.dtype.name, 2)
        body.append(f"  EL_DUMP({k}, T{o}, {ot.size}, {kind});")

    header = f"""/* Generated by edgeloop: compiled model API. */
#ifndef TRAINED_MODEL_COMPILED_H
#define TRAINED_MODEL_COMPILED_H

#include <stddef.h>
#include <stdint.h>

#define EL_TENSOR_ARENA_SIZE {plan.arena_size}
#define EL_INPUT_ELEMENTS {inp.size}
#define EL_OUTPUT_ELEMENTS {out.size}
#define EL_OPERATOR_COUNT {len(graph.operators)}
#define EL_INPUT_INT8 {int(inp.dtype.name == "int8")}
#define EL_OUTPUT_INT8 {int(out.dtype.name == "int8")}

typedef {in_ct} el_input_t;
typedef {out_ct} el_output_t;

/* Input tensor buffer (inside the arena): fill it, then call trained_model_invoke(). */
el_input_t* trained_model_input(void);
/* Output tensor buffer, valid after trained_model_invoke(). */
const el_output_t* trained_model_output(void);
/* Runs the model once; returns 0. Not re-entrant (one static arena). */
int trained_model_invoke(void);

#endif
"""
    consts = "\n".join(em.consts.values())
    params = "\n".join(em.params)
    cpp = f"""/* Generated by edgeloop from a {model_type} TensorFlow Lite graph; do not edit.
 * {len(graph.operators)} operators, arena {plan.arena_size} bytes,
 * constants {em.const_bytes} bytes.
 */
#include "trained_model_compiled.h"

#include <string.h>

#include "../edge-impulse-sdk/kernels/el_kernels.h"

#ifdef EL_DEBUG_DUMP
#include <stdio.h>
static void el_dump(int op, const void* data, int n, int kind) {{
  fprintf(stderr, "#op %d", op);
  for (int i = 0; i < n; ++i) {{
    if (kind == 0) fprintf(stderr, " %d", static_cast<const int8_t*>(data)[i]);
    else if (kind == 1)
      fprintf(stderr, " %.9g", static_cast<double>(static_cast<const float*>(data)[i]));
    else fprintf(stderr, " %d", static_cast<const int32_t*>(data)[i]);
  }}
  fprintf(stderr, "\\n");
}}
#define EL_DUMP(op, ptr, n, kind) el_dump(op, ptr, n, kind)
#else
#define EL_DUMP(op, ptr, n, kind) ((void)0)
#endif

namespace {{

alignas(16) uint8_t tensor_arena[EL_TENSOR_ARENA_SIZE];

{consts}

{params}

}}  // namespace

{chr(10).join(macros)}

el_input_t* trained_model_input(void) {{ return T{graph.inputs[0]}; }}

const el_output_t* trained_model_output(void) {{ return T{graph.outputs[0]}; }}

int trained_model_invoke(void) {{
{chr(10).join(body)}
  return 0;
}}
"""
    log.debug(
        "generated %d ops, arena %d bytes (unshared %d)",
        len(lowered),
        plan.arena_size,
        plan.naive_size,
    )
    return CompiledModel(
        cpp=cpp,
        header=header,
        arena_size=plan.arena_size,
        naive_arena_size=plan.naive_size,
        weights_bytes=em.const_bytes,
        op_names=[op.name for op in graph.operators],
        op_outputs=[op.outputs[0] for op in graph.operators],
        input_tensor=inp,
        output_tensor=out,
    )
