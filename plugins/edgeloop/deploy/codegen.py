"""Code generation: a TFLite graph -> plain C++ (const weights, static arena, invoke()).

The stages, one module each:

- :mod:`~edgeloop.deploy.quantization`: the int8 kernels' integer parameters
  (quantized multipliers and shifts, activation ranges, softmax/logistic/add
  constants), computed as TensorFlow Lite Micro's ``Prepare`` functions do;
- :mod:`~edgeloop.deploy.lowering`: the operator table (what is supported)
  and one kernel call per operator, with its constants;
- :mod:`~edgeloop.deploy.memory_plan`: the static arena (aliases, in place,
  overlapping outputs, shared buffers);
- :mod:`~edgeloop.deploy.emission`: the C++ text, from templates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgeloop.deploy.emission import emit_model
from edgeloop.deploy.lowering import lower_graph
from edgeloop.deploy.memory_plan import plan_memory
from edgeloop.deploy.tflite_graph import Graph, Tensor

log = logging.getLogger(__name__)


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
    lowered = lower_graph(graph, model_type)
    plan = plan_memory(graph, lowered.ops, inplace=inplace)
    sources = emit_model(lowered, plan)
    log.debug(
        "generated %d ops, arena %d bytes (unshared %d)",
        len(lowered.ops),
        plan.arena_size,
        plan.naive_size,
    )
    return CompiledModel(
        cpp=sources.cpp,
        header=sources.header,
        arena_size=plan.arena_size,
        naive_arena_size=plan.naive_size,
        weights_bytes=lowered.constants.nbytes,
        op_names=[op.name for op in graph.operators],
        op_outputs=[op.outputs[0] for op in graph.operators],
        input_tensor=graph.tensors[graph.inputs[0]],
        output_tensor=graph.tensors[graph.outputs[0]],
    )
