"""The JSON Schemas of edgeloop, shipped in the package and read with importlib.resources.

``include/schemas`` in the repository is a link to this folder: one source of truth.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema file ``name`` (e.g. ``pipeline.schema.json``)."""
    return json.loads(files(__name__).joinpath(name).read_text(encoding="utf-8"))


def schema_names() -> list[str]:
    return sorted(p.name for p in files(__name__).iterdir() if p.name.endswith(".schema.json"))
