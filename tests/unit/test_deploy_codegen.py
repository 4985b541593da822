"""Unit tests of the deployment build's plain functions (no TensorFlow)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeloop.cli import build_parser, main
from edgeloop.deploy import build, codegen, convert, emission, lowering, memory_plan, quantization
from edgeloop.deploy.lowering import Lowered
from edgeloop.deploy.memory_plan import plan_memory
from edgeloop.deploy.tflite_graph import Graph, Operator, Tensor
from edgeloop.errors import DeployError

KERNELS = Path(codegen.__file__).parent / "kernels"


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.0, (0, 0)),
        (0.5, (1 << 30, 0)),
        (1.0, (1 << 30, 1)),
        (0.75, (3 << 29, 0)),
        (2.0**-40, (0, 0)),  # below 2^-31: flushed to zero
        (0.9999999999, (1 << 30, 1)),  # rounds up to 2^31 -> halved, shift+1
        (0.0001, (1759218604, -13)),
    ],
)
def test_quantize_multiplier_table(real: float, expected: tuple[int, int]) -> None:
    assert quantization.quantize_multiplier(real) == expected


@pytest.mark.parametrize("real", [1e-6, 0.00390625, 0.1234, 0.7, 3.3, 1234.5])
def test_quantize_multiplier_represents_the_value(real: float) -> None:
    q, shift = quantization.quantize_multiplier(real)
    assert (1 << 30) <= q < (1 << 31)
    assert q * 2.0 ** (shift - 31) == pytest.approx(real, rel=1e-9)


@pytest.mark.parametrize(
    ("activation", "scale", "zp", "expected"),
    [
        ("NONE", 0.1, 3, (-128, 127)),
        ("RELU", 0.1, -20, (-20, 127)),
        ("RELU6", 0.05, -128, (-128, -8)),  # 6 / 0.05 = 120
        ("RELU6", 0.01, -128, (-128, 127)),  # 600 steps: clamped
        ("RELU_N1_TO_1", 0.02, 0, (-50, 50)),
    ],
)
def test_activation_range_int8(
    activation: str, scale: float, zp: int, expected: tuple[int, int]
) -> None:
    assert quantization.activation_range_int8(activation, scale, zp) == expected


@pytest.mark.parametrize(
    ("stride", "dilation", "in_size", "filt", "out_size", "padding", "expected"),
    [
        (1, 1, 8, 3, 8, "SAME", 1),
        (2, 1, 8, 3, 4, "SAME", 0),  # total 1 -> 0 before, 1 after
        (2, 1, 7, 3, 4, "SAME", 1),
        (1, 2, 8, 3, 8, "SAME", 2),
        (1, 1, 8, 3, 6, "VALID", 0),
    ],
)
def test_compute_padding(
    stride: int, dilation: int, in_size: int, filt: int, out_size: int, padding: str, expected: int
) -> None:
    assert lowering.compute_padding(stride, dilation, in_size, filt, out_size, padding) == expected


def _tensor(i: int, shape: tuple[int, ...], const: bool = False) -> Tensor:
    data = np.zeros(shape, np.int8) if const else None
    return Tensor(i, f"t{i}", shape, np.dtype("int8"), data)


def _chain_graph() -> tuple[Graph, list[Lowered]]:
    """conv -> pool -> reshape -> fc -> softmax, plus a skip tensor kept alive to the end."""
    t = [
        _tensor(0, (1, 8, 8, 1)),  # input
        _tensor(1, (1, 8, 8, 8)),  # conv out
        _tensor(2, (1, 4, 4, 8)),  # pool out
        _tensor(3, (1, 128)),  # reshape out (alias of 2)
        _tensor(4, (1, 10)),  # fc out
        _tensor(5, (1, 10)),  # softmax out (in place)
        _tensor(6, (8, 3, 3, 1), const=True),
        _tensor(7, (10, 128), const=True),
    ]
    ops = [
        Operator(0, "CONV_2D", [0, 6], [1]),
        Operator(1, "MAX_POOL_2D", [1], [2]),
        Operator(2, "RESHAPE", [2], [3]),
        Operator(3, "FULLY_CONNECTED", [3, 7], [4]),
        Operator(4, "SOFTMAX", [4], [5]),
    ]
    lowered = [
        Lowered(ops[0], ""),
        Lowered(ops[1], ""),
        Lowered(ops[2], "", alias_input=2),
        Lowered(ops[3], ""),
        Lowered(ops[4], "", inplace_input=4),
    ]
    return Graph(t, ops, [0], [5]), lowered


def _live(graph: Graph, tensor: int) -> tuple[int, int]:
    first = min([k for k, op in enumerate(graph.operators) if tensor in op.outputs] or [0])
    users = [k for k, op in enumerate(graph.operators) if tensor in op.inputs]
    last = len(graph.operators) if tensor in graph.outputs else max(users or [first])
    return first, last


def test_memory_plan_shares_buffers_without_overlap() -> None:
    graph, lowered = _chain_graph()
    plan = plan_memory(graph, lowered)
    # the reshape aliases its input; softmax runs in place
    assert plan.offsets[3] == plan.offsets[2]
    assert plan.offsets[5] == plan.offsets[4]
    # conv out (512 B) and input (64 B) are both live at op 0; pool out too at op 1
    assert plan.arena_size == 512 + 128
    assert plan.naive_size == 64 + 512 + 128 + 128 + 12 + 12
    # no two tensors that are live at the same time overlap in memory
    same = {(2, 3), (3, 2), (4, 5), (5, 4)}
    acts = sorted(plan.offsets)
    for a, b in itertools.combinations(acts, 2):
        if (a, b) in same:
            continue
        fa, la = _live(graph, a)
        fb, lb = _live(graph, b)
        if fa <= lb and fb <= la:
            ra = range(plan.offsets[a], plan.offsets[a] + graph.tensors[a].nbytes)
            rb = range(plan.offsets[b], plan.offsets[b] + graph.tensors[b].nbytes)
            assert not set(ra) & set(rb), (a, b)
    assert all(off % memory_plan.ALIGN == 0 for off in plan.offsets.values())


def test_memory_plan_without_inplace_is_not_smaller() -> None:
    graph, lowered = _chain_graph()
    with_inplace = plan_memory(graph, lowered)
    without = plan_memory(graph, lowered, inplace=False)
    assert without.offsets[5] != without.offsets[4]
    assert with_inplace.arena_size <= without.arena_size


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def _wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def _py_srdhm(a: int, b: int) -> int:
    """Saturating rounding doubling high multiply, from its definition."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def _py_rdbpot(x: int, e: int) -> int:
    """Rounding divide by 2^e, ties away from zero."""
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def _py_mbqm(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _py_rdbpot(_py_srdhm(_wrap32(x * (1 << left)), m), right)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_fixed_point_helpers_match_the_published_arithmetic(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cases = [
        (int(x), int(m), int(s))
        for x, m, s in zip(
            rng.integers(-(2**20), 2**20, 300),
            rng.integers(2**30, 2**31 - 1, 300),
            rng.integers(-20, 5, 300),
            strict=True,
        )
    ]
    cases += [
        (-(2**31), -(2**31), 0),
        (2**31 - 1, 2**31 - 1, 0),
        (-5, 2**30, -1),
        (5, 2**30, -1),
        (-6, 2**30, -2),
        (6, 2**30, -2),
        (0, 2**30, 3),
    ]
    src = tmp_path / "t.cpp"
    src.write_text(
        '#include <stdio.h>\n#include "el_fixedpoint.h"\nint main() {\n  long long x, m; int s;\n'
        '  while (scanf("%lld %lld %d", &x, &m, &s) == 3) printf("%d %d %d\\n",\n'
        "    el::srdhm((int32_t)x, (int32_t)m), el::rdbpot((int32_t)x, s < 0 ? -s : 0),\n"
        "    el::mbqm((int32_t)x, (int32_t)m, s));\n  return 0;\n}\n"
    )
    subprocess.run(
        [
            "g++",
            "-std=c++11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{KERNELS}",
            str(src),
            "-o",
            str(tmp_path / "t"),
        ],
        check=True,
    )
    text = "".join(f"{x} {m} {s}\n" for x, m, s in cases)
    out = subprocess.run(
        [str(tmp_path / "t")], input=text, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for (x, m, s), line in zip(cases, out, strict=False):
        srdhm, rdbpot, mbqm = (int(v) for v in line.split())
        assert srdhm == _py_srdhm(x, m), (x, m)
        assert rdbpot == _py_rdbpot(x, -s if s < 0 else 0), (x, s)
        assert mbqm == _py_mbqm(x, m, s), (x, m, s)


def test_parse_labels(tmp_path: Path) -> None:
    assert build.parse_labels("a, b ,c") == ("a", "b", "c")
    assert build.parse_labels(["x", "y"]) == ("x", "y")
    f = tmp_path / "labels.txt"
    f.write_text("idle\n\nwave\nsnake\n")
    assert build.parse_labels(str(f)) == ("idle", "wave", "snake")
    with pytest.raises(DeployError, match="non-empty"):
        build.parse_labels("a,,b")
    with pytest.raises(DeployError, match="duplicate"):
        build.parse_labels("a,a")
    with pytest.raises(DeployError, match="labels file not found"):
        build.parse_labels(str(tmp_path / "missing.txt"))


def test_load_representative_errors(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, data=np.zeros((3, 4), "f4"))
    with pytest.raises(DeployError, match="no array named 'x'"):
        build.load_representative(p, (4,))
    np.savez(p, x=np.zeros((3, 5), "f4"))
    with pytest.raises(DeployError, match=r"has shape \(3, 5\); the model expects \(N, 4\)"):
        build.load_representative(p, (4,))
    np.savez(p, x=np.zeros((3, 4), "f4"), y=np.zeros(2, "i8"))
    with pytest.raises(DeployError, match="'y' must be a 1-D array"):
        build.load_representative(p, (4,))
    np.savez(p, x=np.full((3, 4), np.nan, "f4"))
    with pytest.raises(DeployError, match="finite"):
        build.load_representative(p, (4,))
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(DeployError, match=r"not a readable \.npz"):
        build.load_representative(tmp_path / "bad.npz", (4,))
    with pytest.raises(DeployError, match="file not found"):
        build.load_representative(tmp_path / "missing.npz", (4,))
    np.savez(p, x=np.ones((10, 4), "f8"), y=np.arange(10))
    arrays = build.load_representative(p, (4,))
    calib, hold, y_hold = build._split(arrays)
    assert arrays["x"].dtype == np.float32
    assert len(calib) == 8 and len(hold) == 2 and list(y_hold) == [8, 9]  # type: ignore[arg-type]


def test_model_and_output_path_errors_need_no_tensorflow(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="model file not found"):
        convert.load_keras_model(tmp_path / "m.keras")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(DeployError, match="not a Keras model file"):
        convert.load_keras_model(tmp_path / "m.onnx")
    with pytest.raises(DeployError, match="does not exist"):
        build.check_output_path(tmp_path / "no" / "lib.zip")
    with pytest.raises(DeployError, match="is a directory"):
        build.check_output_path(tmp_path)
    build.check_output_path(tmp_path / "lib.zip")
    with pytest.raises(DeployError, match="--type must be one of int8, float32"):
        build.build_library(
            tmp_path / "m.keras", tmp_path / "d.npz", "a", "int4", tmp_path / "lib.zip"
        )


def test_cli_registers_deploy_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        [
            "deploy",
            "build",
            "--model",
            "m.keras",
            "--representative",
            "d.npz",
            "--labels",
            "a,b",
            "--out",
            "x.zip",
        ]
    )
    assert args.model_type == "int8" and callable(args.handler)
    rc = main(
        [
            "deploy",
            "build",
            "--model",
            str(tmp_path / "m.keras"),
            "--representative",
            str(tmp_path / "d.npz"),
            "--labels",
            "a,b",
            "--type",
            "float32",
            "--out",
            str(tmp_path / "x.zip"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: --model" in err and "model file not found" in err


def _kernel_events(
    p: dict[str, int], in_c: int, out_c: int, block: int, channelwise: bool
) -> list[tuple[str, int]]:
    """The kernels' memory accesses in order: ("r", input element) / ("w", output element)."""
    events: list[tuple[str, int]] = []
    for b in range(p["batches"]):
        for oy in range(p["out_h"]):
            for ox in range(p["out_w"]):
                pix = (b * p["out_h"] + oy) * p["out_w"] + ox
                ys = [
                    oy * p["stride_h"] - p["pad_h"] + p["dil_h"] * fy for fy in range(p["filter_h"])
                ]
                xs = [
                    ox * p["stride_w"] - p["pad_w"] + p["dil_w"] * fx for fx in range(p["filter_w"])
                ]
                taps = [
                    (iy, ix)
                    for iy in ys
                    for ix in xs
                    if 0 <= iy < p["in_h"] and 0 <= ix < p["in_w"]
                ]
                for c0 in range(0, out_c, block):
                    chans = range(c0, min(c0 + block, out_c)) if channelwise else range(in_c)
                    for iy, ix in taps:
                        for c in chans:
                            events.append(("r", ((b * p["in_h"] + iy) * p["in_w"] + ix) * in_c + c))
                    for c in range(c0, min(c0 + block, out_c)):
                        events.append(("w", pix * out_c + c))
    return events


def _clobbers(events: list[tuple[str, int]], delta: int) -> bool:
    """Does any write (output at input + delta) hit an input element read later?"""
    last_read: dict[int, int] = {}
    for i, (kind, addr) in enumerate(events):
        if kind == "r":
            last_read[addr] = i
    return any(
        kind == "w" and last_read.get(addr + delta, -1) > i for i, (kind, addr) in enumerate(events)
    )


@pytest.mark.parametrize(
    ("geo", "in_c", "out_c", "block", "channelwise"),
    [
        # depthwise 3x3 SAME stride 1
        ((1, 5, 6, 5, 6, 1, 1, 1, 1, 3, 3, 1, 1), 3, 3, 32, True),
        # depthwise, channels in two blocks
        ((1, 4, 4, 4, 4, 1, 1, 1, 1, 3, 3, 1, 1), 5, 5, 2, True),
        # max pool 2x2 stride 2
        ((1, 6, 6, 3, 3, 2, 2, 0, 0, 2, 2, 1, 1), 4, 4, 1, True),
        # conv 3x3 VALID, 2 -> 3 channels in blocks of 2
        ((1, 6, 5, 4, 3, 1, 1, 0, 0, 3, 3, 1, 1), 2, 3, 2, False),
        # conv 3x3 SAME stride 2, dilation 1, batch 2
        ((2, 5, 5, 3, 3, 2, 2, 1, 1, 3, 3, 1, 1), 1, 4, 32, False),
        # dilated depthwise
        ((1, 7, 7, 7, 7, 1, 1, 2, 2, 3, 3, 2, 2), 2, 2, 32, True),
    ],
)
def test_overlap_bound_is_safe_and_tight(
    geo: tuple[int, ...], in_c: int, out_c: int, block: int, channelwise: bool
) -> None:
    keys = (
        "batches",
        "in_h",
        "in_w",
        "out_h",
        "out_w",
        "stride_h",
        "stride_w",
        "pad_h",
        "pad_w",
        "filter_h",
        "filter_w",
        "dil_h",
        "dil_w",
    )
    p = dict(zip(keys, geo, strict=True))
    bound = memory_plan.overlap_delta(p, in_c, out_c, block, channelwise, 1)
    events = _kernel_events(p, in_c, out_c, block, channelwise)
    assert not _clobbers(events, bound)
    assert not _clobbers(events, bound - 5)
    assert _clobbers(events, bound + 1)
    assert memory_plan.overlap_delta(p, in_c, out_c, block, channelwise, 4) == 4 * bound


@pytest.mark.skipif(
    shutil.which("g++") is None or shutil.which("make") is None, reason="needs g++ and make"
)
def test_broadcast_add_and_mean_axes_compile_and_match_numpy(tmp_path: Path) -> None:
    """A hand-built float graph: ADD with a broadcast constant (+RELU), then MEAN over axis 1."""
    from edgeloop.deploy import package

    rng = np.random.default_rng(3)
    bias = rng.normal(size=(4,)).astype(np.float32)
    f32 = np.dtype("float32")
    tensors = [
        Tensor(0, "x", (1, 2, 3, 4), f32),
        Tensor(1, "c", (4,), f32, bias),
        Tensor(2, "sum", (1, 2, 3, 4), f32),
        Tensor(3, "axis", (1,), np.dtype("int32"), np.array([1], np.int32)),
        Tensor(4, "mean", (1, 3, 4), f32),
    ]
    ops = [
        Operator(0, "ADD", [0, 1], [2], {"activation": "RELU"}),
        Operator(1, "MEAN", [2, 3], [4], {"keep_dims": False}),
    ]
    compiled = codegen.generate(Graph(tensors, ops, [0], [4]), "float32")
    info = package.LibraryInfo(tuple(f"o{i}" for i in range(12)), "float32", (2, 3, 4), "t")
    package.write_library(tmp_path, compiled, info, b"")
    subprocess.run(
        ["make", "-s", "CXXFLAGS=-std=c++11 -O2 -Wall -Wextra -Werror"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    x = rng.normal(size=(5, 1, 2, 3, 4)).astype(np.float32)
    text = "".join(" ".join(f"{v:.9g}" for v in s.reshape(-1)) + "\n" for s in x)
    out = subprocess.run(
        [str(tmp_path / "example")],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    got = np.array([[float(v) for v in line.split()] for line in out.splitlines()])
    expected = np.maximum(x + bias, 0).mean(axis=2).reshape(5, -1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_unsupported_operator_error_names_it_and_lists_supported() -> None:
    f32 = np.dtype("float32")
    tensors = [Tensor(0, "x", (1, 4), f32), Tensor(1, "y", (1, 4), f32)]
    graph = Graph(tensors, [Operator(0, "TANH", [0], [1])], [0], [1])
    with pytest.raises(DeployError) as err:
        codegen.generate(graph, "float32")
    assert str(err.value).startswith("unsupported operator TANH (op #0)")
    assert "supported operators: " + ", ".join(lowering.SUPPORTED_OPS) in str(err.value)
    tensors.append(Tensor(2, "w", (4, 4), f32, np.eye(4, dtype=np.float32)))
    graph = Graph(
        tensors, [Operator(0, "FULLY_CONNECTED", [0, 2], [1], {"activation": "TANH"})], [0], [1]
    )
    with pytest.raises(DeployError, match=r"FULLY_CONNECTED \(op #0\): fused activation TANH"):
        codegen.generate(graph, "float32")


def test_add_in_place_falls_back_to_the_second_input() -> None:
    t = [
        _tensor(0, (1, 16)),
        _tensor(1, (1, 16)),
        _tensor(2, (1, 16)),
        _tensor(3, (1, 16)),
        _tensor(4, (16, 16), True),
    ]
    ops = [
        Operator(0, "FULLY_CONNECTED", [0, 4], [1]),
        Operator(1, "ADD", [0, 1], [2]),
        Operator(2, "ADD", [0, 2], [3]),
    ]  # input 0 is read again by op 2
    lowered = [
        Lowered(ops[0], ""),
        Lowered(ops[1], "", inplace_input=0, inplace_alt=1),
        Lowered(ops[2], "", inplace_input=0, inplace_alt=2),
    ]
    plan = plan_memory(Graph(t, ops, [0], [3]), lowered)
    assert plan.offsets[2] == plan.offsets[1]
    assert plan.offsets[3] == plan.offsets[0]  # input 0 dies at op 2: used first


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_weights_are_refused_with_tensor_and_operator(bad: float) -> None:
    """float32 used to emit `nan.0f` (which g++ rejects) for a NaN weight."""
    f32 = np.dtype("float32")
    w = np.eye(4, dtype=np.float32)
    w[1, 2] = bad
    tensors = [
        Tensor(0, "x", (1, 4), f32),
        Tensor(1, "y", (1, 4), f32),
        Tensor(2, "dense/kernel", (4, 4), f32, w),
    ]
    ops = [Operator(0, "FULLY_CONNECTED", [0, 2], [1], {"activation": "NONE"})]
    with pytest.raises(DeployError) as err:
        codegen.generate(Graph(tensors, ops, [0], [1]), "float32")
    msg = str(err.value)
    assert msg.startswith("operator #0 FULLY_CONNECTED: tensor 'dense/kernel' holds non-finite")
    assert ("1 NaN" if np.isnan(bad) else "1 infinite") in msg


def test_non_finite_int8_scale_is_a_deploy_error_naming_the_tensor() -> None:
    """int8 used to raise `ValueError: cannot convert float NaN to integer`."""
    i8 = np.dtype("int8")
    one = np.zeros(1, np.int64)
    tensors = [
        Tensor(0, "x", (1, 4), i8, None, np.array([0.1], np.float32), one),
        Tensor(1, "y", (1, 4), i8, None, np.array([0.2], np.float32), one),
        Tensor(2, "dense/kernel", (4, 4), i8, np.eye(4, dtype=np.int8)),
    ]
    tensors[2].scales = np.array([np.nan], np.float32)
    tensors[2].zero_points = one
    ops = [Operator(0, "FULLY_CONNECTED", [0, 2], [1], {"activation": "NONE"})]
    with pytest.raises(
        DeployError, match=r"FULLY_CONNECTED: tensor 'dense/kernel' has a non-finite"
    ):
        codegen.generate(Graph(tensors, ops, [0], [1]), "int8")
    tensors[2].scales = np.array([0.05], np.float32)  # the same graph, finite: it compiles
    assert "el::fully_connected_s8(" in codegen.generate(Graph(tensors, ops, [0], [1]), "int8").cpp


def test_emission_has_no_literal_for_nan() -> None:
    assert emission.c_float(float("inf")) == emission.FLT_MAX
    assert emission.c_float(6.0) == "6.0f"
    with pytest.raises(ValueError, match="NaN"):
        emission.c_float(float("nan"))


def test_model_files_that_are_not_keras_models_by_content(tmp_path: Path) -> None:
    """Random bytes named .keras used to be reported as "File not found"."""
    rng = np.random.default_rng(0)
    random_keras = tmp_path / "model.keras"
    random_keras.write_bytes(rng.bytes(4096))
    with pytest.raises(DeployError) as err:
        convert.load_keras_model(random_keras)
    msg = str(err.value)
    assert msg.startswith(f"--model {random_keras}: not a Keras model file")
    assert "expected a .keras zip archive holding config.json" in msg
    assert "not a zip archive" in msg
    assert "not found" not in msg.lower()

    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("data.csv", "a,b\n")
    with pytest.raises(DeployError, match=r"not a Keras model file .*holds no config\.json"):
        convert.load_keras_model(other_zip)

    random_h5 = tmp_path / "model.h5"
    random_h5.write_bytes(rng.bytes(4096))
    with pytest.raises(DeployError, match=r"model\.h5: not a Keras model file .*no HDF5 signature"):
        convert.load_keras_model(random_h5)
    with_user_block = tmp_path / "block.h5"  # the signature after a 512-byte user block
    with_user_block.write_bytes(b"\0" * 512 + convert.HDF5_SIGNATURE + b"\0" * 64)
    convert.check_model_file(with_user_block)
