"""Read a ``.tflite`` flatbuffer into plain Python objects (via the ``tflite`` package).

Only what the code generator needs: tensors (shape, type, quantization,
constant data) and operators (builtin name, inputs, outputs, options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeloop.deploy.errors import DeployError

# TensorType enum of the TFLite schema -> numpy dtype.
_TENSOR_TYPES: dict[int, np.dtype] = {
    0: np.dtype("float32"),
    1: np.dtype("float16"),
    2: np.dtype("int32"),
    3: np.dtype("uint8"),
    4: np.dtype("int64"),
    7: np.dtype("int16"),
    9: np.dtype("int8"),
}

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None  # constant tensors only
    scales: np.ndarray | None = None
    zero_points: np.ndarray | None = None
    quantized_dimension: int = 0

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def scale(self) -> float:
        return float(self.scales[0]) if self.scales is not None and len(self.scales) else 0.0

    @property
    def zero_point(self) -> int:
        if self.zero_points is not None and len(self.zero_points):
            return int(self.zero_points[0])
        return 0


@dataclass
class Operator:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _options(op: Any, name: str) -> dict[str, Any]:
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return {}

    def load(cls: Any) -> Any:
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        return obj

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = load(tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        out = {
            "padding": _PADDING.get(o.Padding(), str(o.Padding())),
            "stride_w": o.StrideW(),
            "stride_h": o.StrideH(),
            "dilation_w": o.DilationWFactor(),
            "dilation_h": o.DilationHFactor(),
            "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), "?"),
        }
        if name == "DEPTHWISE_CONV_2D":
            out["depth_multiplier"] = o.DepthMultiplier()
        return out
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        o = load(tflite.Pool2DOptions)
        return {
            "padding": _PADDING.get(o.Padding(), str(o.Padding())),
            "stride_w": o.StrideW(),
            "stride_h": o.StrideH(),
            "filter_w": o.FilterWidth(),
            "filter_h": o.FilterHeight(),
            "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), "?"),
        }
    if name == "FULLY_CONNECTED":
        o = load(tflite.FullyConnectedOptions)
        return {
            "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), "?"),
            "keep_num_dims": bool(o.KeepNumDims()),
            "weights_format": o.WeightsFormat(),
        }
    if name == "SOFTMAX":
        return {"beta": float(load(tflite.SoftmaxOptions).Beta())}
    if name == "ADD":
        act = load(tflite.AddOptions).FusedActivationFunction()
        return {"activation": _ACTIVATIONS.get(act, "?")}
    if name == "MEAN":
        return {"keep_dims": bool(load(tflite.ReducerOptions).KeepDims())}
    return {}


def read_graph(data: bytes) -> Graph:
    """Parse the first subgraph of a TFLite flatbuffer."""
    import tflite

    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise DeployError("the converted .tflite model has no subgraph")
        sg = model.Subgraphs(0)
    except DeployError:
        raise
    except Exception as exc:  # flatbuffer decoding errors carry no useful type
        raise DeployError(f"cannot parse the converted .tflite model: {exc}") from exc
    if model.SubgraphsLength() > 1:
        raise DeployError(
            "the converted model has control flow (more than one subgraph); "
            "only single-graph models can be compiled"
        )
    names = _builtin_names()
    tensors: list[Tensor] = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        dtype = _TENSOR_TYPES.get(t.Type())
        if dtype is None:
            raise DeployError(f"tensor {t.Name().decode()!r} has unsupported type code {t.Type()}")
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        data_arr = None
        buf = model.Buffers(t.Buffer())
        if buf is not None and buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
            data_arr = np.frombuffer(raw, dtype=dtype).reshape(shape if shape else ())
        scales = zps = None
        qdim = 0
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0:
            scales = q.ScaleAsNumpy().astype(np.float32)
            zps = q.ZeroPointAsNumpy().astype(np.int64)
            qdim = int(q.QuantizedDimension())
        tensors.append(
            Tensor(i, t.Name().decode(errors="replace"), shape, dtype, data_arr, scales, zps, qdim)
        )
    operators: list[Operator] = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM({oc.CustomCode().decode(errors='replace')})"
        inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        operators.append(Operator(i, name, inputs, outputs, _options(op, name)))
    return Graph(
        tensors,
        operators,
        [int(x) for x in sg.InputsAsNumpy()],
        [int(x) for x in sg.OutputsAsNumpy()],
    )
