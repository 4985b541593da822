"""Transformation blocks: the block contract (parameters.json, ei-metadata.json)
and a runner that executes a block folder locally or in Docker.

Keep this module light: the CLI imports it at start-up.
"""

from __future__ import annotations

from edgeloop.blocks.params import BlockParameter, BlockSpec, load_block_spec
from edgeloop.blocks.runner import BlockResult, run_block

__all__ = ["BlockParameter", "BlockResult", "BlockSpec", "load_block_spec", "run_block"]
