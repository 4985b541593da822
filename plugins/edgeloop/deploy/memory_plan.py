"""The static memory plan: every non-constant tensor at a fixed offset in one arena.

Lifetimes come from the operator order; a RESHAPE output aliases its input,
element-wise operators run in place over a dying input, and convolutions and
pooling may write their output overlapping their dying input from a safe
offset on (:func:`overlap_delta`, derived from the kernels' read/write order).
The lowering (:mod:`edgeloop.deploy.lowering`) says which of these each
operator allows; this module only places bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeloop.deploy.tflite_graph import Graph

if TYPE_CHECKING:
    from edgeloop.deploy.lowering import Lowered

ALIGN = 4


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
class MemoryPlan:
    offsets: dict[int, int]  # tensor index -> arena offset
    arena_size: int
    naive_size: int  # every activation in its own buffer
    buffers: list[dict[str, int]]


def plan_memory(
    graph: Graph, lowered: Sequence[Lowered], *, inplace: bool = True, align: int = ALIGN
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
