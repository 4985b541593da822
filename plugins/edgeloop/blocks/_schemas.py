"""Locate and load the JSON Schemas kept in the repository's include/schemas/."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from edgeloop.errors import ConfigError


def include_dir() -> Path:
    """The repository's include/ folder (override with EDGELOOP_INCLUDE_DIR)."""
    env = os.environ.get("EDGELOOP_INCLUDE_DIR")
    if env:
        return Path(env)
    # plugins/edgeloop/blocks/_schemas.py -> repository root is parents[3]
    return Path(__file__).resolve().parents[3] / "include"


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    path = include_dir() / "schemas" / name
    with open(path, encoding="utf-8") as fh:
        schema = json.load(fh)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(document: Any, schema_name: str, *, file: str) -> None:
    """Validate `document` against include/schemas/`schema_name`.

    Raises ConfigError naming the file, the JSON path of the most relevant
    error, and the offending value.
    """
    error = best_match(_validator(schema_name).iter_errors(document))
    if error is None:
        return
    # For oneOf failures, descend to the most specific cause.
    while error.context:
        error = best_match(error.context)
    raise ConfigError(f"{error.message} (schema {schema_name})", file=file, path=error.json_path)
