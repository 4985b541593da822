"""ei-metadata.json: the metadata update a block writes next to its outputs.

``{"version": 1, "action": "add" | "replace" | "replace-checks", "metadata": {...}}``,
validated by the ei-metadata schema (edgeloop/schemas/ei-metadata.schema.json) and
applied to the item's metadata with these semantics:

- ``add``: every key of the update is set (the update's value wins); other
  keys are kept.
- ``replace``: all existing keys are removed; the item ends up with exactly
  the update's keys.
- ``replace-checks``: only the checklist is replaced: every existing
  ``ei_check*`` key is removed and the update's ``ei_check*`` keys are set;
  keys that are not checks are left as they were on the item (such keys in
  the update are ignored, with a warning).

Item metadata is ``{str: str}``. Blocks written for the reference platform echo the
whole ``--metadata`` object back, ``dataItemInfo`` included, and write numbers as
values (``"ei_check_files_present": 1``), so a value may be any JSON scalar and is
stored as a string (see ``value_text``); an echoed ``dataItemInfo`` is ignored; any
other object or array is refused with its JSON path.

Bounds: the file is at most MAX_METADATA_BYTES and holds at most MAX_KEYS keys.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeloop.blocks._jsonfile import read_json_file
from edgeloop.blocks._schemas import validate
from edgeloop.errors import ConfigError

log = logging.getLogger(__name__)

FILE_NAME = "ei-metadata.json"
CHECK_PREFIX = "ei_check"
ACTIONS = ("add", "replace", "replace-checks")
ITEM_INFO_KEY = "dataItemInfo"  # what --metadata carries besides the metadata; echoed back
MAX_METADATA_BYTES = 1024 * 1024
MAX_KEYS = 1000


@dataclass(frozen=True)
class MetadataUpdate:
    action: str
    metadata: dict[str, str]
    source: str = ""


def is_check_key(key: str) -> bool:
    """``ei_check`` (the overall mark) and ``ei_check_<KEY>`` (checklist entries)."""
    return key == CHECK_PREFIX or key.startswith(CHECK_PREFIX + "_")


def value_text(value: object, *, file: str | None, path: str) -> str:
    """A metadata value as stored: strings as they are, numbers as their JSON text
    (``1`` -> ``"1"``, ``0.5`` -> ``"0.5"``), booleans as ``"1"`` / ``"0"`` (as boolean
    parameters are passed to blocks), null as ``""``. Objects and arrays are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return json.dumps(value)
    raise ConfigError(
        "not a scalar",
        file=file,
        path=path,
        expected="a string, number, boolean or null",
        value=value,
    )


def _key_path(key: str) -> str:
    return f"$.metadata.{key}" if key.isidentifier() else f"$.metadata[{json.dumps(key)}]"


def parse_metadata_update(document: object, *, source: str) -> MetadataUpdate:
    """Validate an already-decoded ei-metadata.json document."""
    metadata = document.get("metadata") if isinstance(document, dict) else None
    if isinstance(metadata, dict) and len(metadata) > MAX_KEYS:  # before the schema: it is cheap
        raise ConfigError(
            f"more than {MAX_KEYS} keys",
            file=source,
            path="$.metadata",
            expected=f"at most {MAX_KEYS} keys",
            value=f"{len(metadata)} keys",
        )
    validate(document, "ei-metadata.schema.json", file=source)
    if not isinstance(document, dict):  # the schema already says so; keeps type checkers calm
        raise ConfigError("not a JSON object", file=source, path="$")
    values = {
        key: value_text(value, file=source, path=_key_path(key))
        for key, value in document["metadata"].items()
        if key != ITEM_INFO_KEY
    }
    return MetadataUpdate(document["action"], values, source)


def read_metadata_update(path: str | Path) -> MetadataUpdate | None:
    """Read ``path`` (a file, or a folder holding ei-metadata.json); None if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.exists():
        return None
    document = read_json_file(path, max_bytes=MAX_METADATA_BYTES)
    return parse_metadata_update(document, source=str(path))


def apply_metadata_update(current: Mapping[str, str], update: MetadataUpdate) -> dict[str, str]:
    """The item's metadata after `update` (a new dict; `current` is not changed)."""
    if update.action == "add":
        return {**current, **update.metadata}
    if update.action == "replace":
        return dict(update.metadata)
    if update.action == "replace-checks":
        ignored = sorted(k for k in update.metadata if not is_check_key(k))
        if ignored:
            log.warning(
                "%s: replace-checks ignores keys that are not checks: %s",
                update.source or FILE_NAME,
                ", ".join(ignored),
            )
        kept = {k: v for k, v in current.items() if not is_check_key(k)}
        checks = {k: v for k, v in update.metadata.items() if is_check_key(k)}
        return {**kept, **checks}
    raise ConfigError(
        "unknown action",
        file=update.source,
        path="$.action",
        expected=f"one of {list(ACTIONS)}",
        value=update.action,
    )


def write_metadata_update(out_dir: str | Path, action: str, metadata: Mapping[str, str]) -> Path:
    """Write ei-metadata.json (what a block does; used by tests and Python blocks).

    Stricter than the reader: edgeloop's own blocks write string values only.
    """
    doc = {"version": 1, "action": action, "metadata": dict(metadata)}
    parse_metadata_update(doc, source=FILE_NAME)
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise ConfigError(
                "not a string",
                file=FILE_NAME,
                path=_key_path(key),
                expected="a string",
                value=value,
            )
    path = Path(out_dir) / FILE_NAME
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
