"""Quantization arithmetic: the integer parameters of the int8 kernels, computed at build time.

Quantized multipliers and shifts, activation ranges, and the softmax, logistic
and add constants use the same formulas and the same float32/float64
precision as TensorFlow Lite Micro's ``Prepare`` functions, so that the
kernels (which only do integer arithmetic) are bit-exact against it. Every
function here is pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ADD_LEFT_SHIFT = 20  # TFLM's add: inputs are shifted left by 20 bits before rescaling


def round_half_away(x: float) -> int:
    """``std::round``: halves round away from zero."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def f32(x: float) -> np.float32:
    """``x`` as a float32 (TFLM keeps scales as ``float``)."""
    return np.float32(x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = q * 2^shift with q a Q0.31 integer."""
    if not math.isfinite(real):
        raise ValueError(f"cannot quantize a non-finite multiplier ({real})")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def activation_range_int8(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output (f / scale in float32)."""

    def quantize(f: float) -> int:
        return zero_point + round_half_away(float(f32(f) / f32(scale)))

    if activation == "RELU":
        return max(-128, quantize(0.0)), 127
    if activation == "RELU6":
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    return -128, 127


def activation_range_float(activation: str) -> tuple[float, float]:
    """The clamp of a fused activation on float32 outputs (infinite: no clamp on that side)."""
    return {
        "RELU": (0.0, math.inf),
        "RELU6": (0.0, 6.0),
        "RELU_N1_TO_1": (-1.0, 1.0),
    }.get(activation, (-math.inf, math.inf))


def rescale_multiplier(in_scale: float, out_scale: float) -> tuple[int, int]:
    """Multiplier and shift taking one int8 scale to another (MEAN, requantizing QUANTIZE)."""
    return quantize_multiplier(float(np.float64(f32(in_scale)) / np.float64(f32(out_scale))))


def fully_connected_multiplier(
    in_scale: float, filter_scale: float, out_scale: float
) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler: the scale product in float32, then divided in double."""
    prod = np.float64(f32(in_scale) * f32(filter_scale))
    return quantize_multiplier(float(prod / np.float64(out_scale)))


def per_channel_multipliers(
    in_scale: float, filter_scales: Sequence[float] | np.ndarray, out_scale: float, channels: int
) -> tuple[list[int], list[int]]:
    """Per output channel (a single filter scale applies to all): multipliers, shifts."""
    fs = np.asarray(filter_scales, dtype=np.float32)
    if fs.size == 0:
        fs = np.zeros(1, np.float32)
    mults, shifts = [], []
    for c in range(channels):
        s = fs[c] if len(fs) > 1 else fs[0]
        real = float(np.float64(in_scale) * np.float64(s) / np.float64(out_scale))
        m, sh = quantize_multiplier(real)
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def add_params(a_scale: float, b_scale: float, out_scale: float) -> dict[str, int]:
    """The int8 ADD constants: both inputs rescaled to twice the larger scale, then the output."""
    twice_max = 2 * float(np.float64(max(f32(a_scale), f32(b_scale))))
    m1, s1 = quantize_multiplier(float(np.float64(f32(a_scale))) / twice_max)
    m2, s2 = quantize_multiplier(float(np.float64(f32(b_scale))) / twice_max)
    mo, so = quantize_multiplier(
        twice_max / ((1 << ADD_LEFT_SHIFT) * float(np.float64(f32(out_scale))))
    )
    return {
        "left_shift": ADD_LEFT_SHIFT,
        "in1_multiplier": m1,
        "in2_multiplier": m2,
        "out_multiplier": mo,
        "in1_shift": s1,
        "in2_shift": s2,
        "out_shift": so,
    }


def softmax_params(beta: float, in_scale: float) -> tuple[int, int, int]:
    """The int8 softmax constants: (input multiplier, input left shift, diff_min)."""
    real = min(
        float(np.float64(f32(beta)) * np.float64(f32(in_scale)) * (1 << 26)),
        float((1 << 31) - 1),
    )
    mult, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << 26) / (1 << shift))
    return mult, shift, -int(radius)


def logistic_params(in_scale: float) -> tuple[int, int, int]:
    """The int8 logistic constants: (input multiplier, input left shift, input range radius)."""
    real = float(np.float64(f32(in_scale)) * float(1 << 27))
    if not math.isfinite(real):
        raise ValueError(f"cannot quantize a non-finite multiplier ({real})")
    q, shift = math.frexp(real)
    mult = round_half_away(q * (1 << 31))
    if mult >= (1 << 31):
        mult -= 1 << 32  # static_cast<int32_t> wrap, as in the reference
    radius = math.floor(1.0 * ((1 << 4) - 1) * (1 << 27) / (2.0**shift))
    return mult, shift, int(radius)
