"""Transformation blocks: the block contract (parameters.json, ei-metadata.json)
and a runner that executes a block folder locally or in Docker.

Modules: ``params`` and ``metadata`` (the contract), ``runner`` (``run_block``, the
entry point), ``runtimes`` (local venv / docker), ``venvs`` (the cached uv venvs),
``process`` (start, stream, time limit, kill), ``outputs`` (what a block left),
``masking`` (secrets out of the log), ``cli`` (``edgeloop block run``).

Keep this module light: the CLI imports it at start-up, so the names below are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BlockParameter": "edgeloop.blocks.params",
    "BlockSpec": "edgeloop.blocks.params",
    "load_block_spec": "edgeloop.blocks.params",
    "BlockResult": "edgeloop.blocks.runner",
    "run_block": "edgeloop.blocks.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
