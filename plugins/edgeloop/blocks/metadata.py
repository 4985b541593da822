"""ei-metadata.json: the metadata update a block writes next to its outputs.

``{"version": 1, "action": "add" | "replace" | "replace-checks", "metadata": {str: str}}``,
validated by include/schemas/ei-metadata.schema.json and applied to the item's
metadata with these semantics:

- ``add``: every key of the update is set (the update's value wins); other
  keys are kept.
- ``replace``: all existing keys are removed; the item ends up with exactly
  the update's keys.
- ``replace-checks``: only the checklist is replaced: every existing
  ``ei_check*`` key is removed and the update's ``ei_check*`` keys are set;
  keys that are not checks are left as they were on the item (such keys in
  the update are ignored, with a warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeloop.blocks._schemas import validate
from edgeloop.errors import ConfigError

log = logging.getLogger(__name__)

FILE_NAME = "ei-metadata.json"
CHECK_PREFIX = "ei_check"
ACTIONS = ("add", "replace", "replace-checks")


@dataclass(frozen=True)
class MetadataUpdate:
    action: str
    metadata: dict[str, str]
    source: str = ""


def is_check_key(key: str) -> bool:
    """``ei_check`` (the overall mark) and ``ei_check_<KEY>`` (checklist entries)."""
    return key == CHECK_PREFIX or key.startswith(CHECK_PREFIX + "_")


def parse_metadata_update(document: object, *, source: str) -> MetadataUpdate:
    """Validate an already-decoded ei-metadata.json document."""
    validate(document, "ei-metadata.schema.json", file=source)
    if not isinstance(document, dict):  # the schema already says so; keeps type checkers calm
        raise ConfigError("not a JSON object", file=source, path="$")
    return MetadataUpdate(document["action"], dict(document["metadata"]), source)


def read_metadata_update(path: str | Path) -> MetadataUpdate | None:
    """Read ``path`` (a file, or a folder holding ei-metadata.json); None if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=str(path)
        ) from exc
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
    """Write ei-metadata.json (what a block does; used by tests and Python blocks)."""
    doc = {"version": 1, "action": action, "metadata": dict(metadata)}
    parse_metadata_update(doc, source=FILE_NAME)
    path = Path(out_dir) / FILE_NAME
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
