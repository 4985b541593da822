"""A step's block: found by its id in the block folders, and hashed by content."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.errors import ConfigError

if TYPE_CHECKING:
    from edgeloop.blocks.params import BlockSpec

SKIPPED_PARTS = ("__pycache__", ".git", ".venv")


def block_folders() -> tuple[Path, ...]:
    """Where blocks are looked up: ``include/blocks/`` then ``EDGELOOP_BLOCKS_PATH``."""
    from edgeloop.settings import get_settings

    return get_settings().blocks_path


def find_block(
    block_id: str,
    *,
    folders: Sequence[Path] | None = None,
    file: str | None = None,
    path: str | None = None,
) -> Path:
    """The folder of block ``block_id`` (the first folder holding ``<id>/parameters.json``).

    Raises ConfigError naming every folder searched."""
    folders = tuple(folders if folders is not None else block_folders())
    if block_id and "/" not in block_id and block_id not in (".", ".."):
        for folder in folders:
            candidate = folder / block_id
            if (candidate / "parameters.json").is_file():
                return candidate
    searched = ", ".join(str(f) for f in folders) or "(none)"
    raise ConfigError(
        f"unknown transformation block {block_id!r}: no folder {block_id!r} with a "
        f"parameters.json in {searched} (add folders with EDGELOOP_BLOCKS_PATH)",
        file=file,
        path=path,
        expected=f"a block folder name in {searched}",
        value=block_id,
    )


def block_sha(block_dir: Path) -> str:
    """sha256 over the block folder's files (relative path and content), caches left out."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(block_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_PARTS)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            p = Path(root) / name
            digest.update(str(p.relative_to(block_dir)).encode() + b"\0")
            digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()


def operates_on(spec: BlockSpec) -> str:
    """A block's fan-out; a bare-list parameters.json (the older form) states none and, as
    on the reference platform, runs per file."""
    return spec.operates_on or "file"


@dataclass(frozen=True)
class StepSpec:
    """What a block step's tasks carry: the step's config, resolved (no raw JSON)."""

    block_id: str
    filter: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    parallel: int = 1
    extra_cli_arguments: str = ""
    upload_type: str = "dataset"
    output_dataset_name: str | None = None
    output_dataset_path_rule: str = "subfolder-per-item"
    category: str | None = None
    label: str | None = None
    aws_conn_id: str = "aws_default"
    project: str = ""

    def params_sha(self) -> str:
        """sha256 of everything in the step that shapes a unit's result."""
        doc = {
            "parameters": sorted(self.parameters),
            "extra": self.extra_cli_arguments,
            "upload": [
                self.upload_type,
                self.output_dataset_name,
                self.output_dataset_path_rule,
                self.category,
                self.label,
                self.project if self.upload_type == "project" else "",
            ],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> StepSpec:
        values = dict(raw)
        values["parameters"] = tuple(tuple(p) for p in values.get("parameters", ()))  # type: ignore[union-attr]
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        out = asdict(self)
        out["parameters"] = [list(p) for p in self.parameters]
        return out
