"""Read a block's JSON file (parameters.json, ei-metadata.json) with bounds.

Every way a file can be wrong ends in a ConfigError naming it: not a regular file
(a folder, a FIFO: never opened in a way that could block), larger than the limit,
not UTF-8, not JSON (NaN and Infinity included), nested deeper than the limit.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from edgeloop.errors import ConfigError

MAX_DEPTH = 32  # parameters.json needs 4 levels, ei-metadata.json 3 (4 with an echoed item)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(document: Any) -> int:
    """Nesting depth of a decoded document, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def read_json_file(path: Path, *, max_bytes: int) -> Any:
    """Decode the JSON document at `path` (at most `max_bytes`)."""
    file = str(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(
                    "not a regular file", file=file, expected="a JSON file", value=_kind(mode)
                )
            data = fh.read(max_bytes + 1)
    except IsADirectoryError:
        raise ConfigError(
            "not a regular file", file=file, expected="a JSON file", value="a folder"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from exc
    if len(data) > max_bytes:
        raise ConfigError(
            f"larger than {max_bytes} bytes", file=file, expected=f"at most {max_bytes} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8: byte {data[exc.start]:#04x} at offset {exc.start}", file=file
        ) from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=file
        ) from None
    except ValueError as exc:  # NaN / Infinity
        raise ConfigError(f"not valid JSON: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", file=file) from None
    if _depth(document) > MAX_DEPTH:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", file=file)
    return document


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
