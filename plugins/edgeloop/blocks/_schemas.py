"""Validate documents against the package's JSON Schemas (edgeloop.schemas)."""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from edgeloop.errors import ConfigError
from edgeloop.schemas import load_schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
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
