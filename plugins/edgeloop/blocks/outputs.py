"""What a block left in its out-directory: its output files and per-item metadata.

Only what is inside the out-directory counts. The folder is walked without following
symlinks: a regular file is an output; a symlink is accepted when it resolves to a
regular file inside the out-directory (listed under the link's own path) or to a folder
inside it (not walked again: its files are listed where they are); a symlink that
resolves outside the out-directory, or to nothing, and anything that is neither a file,
a folder nor a symlink (a FIFO, a socket, a device) is refused with its path. Files a
block wrote elsewhere (``../x``) are never collected.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgeloop.blocks.metadata import FILE_NAME as METADATA_FILE
from edgeloop.blocks.metadata import apply_metadata_update, read_metadata_update
from edgeloop.errors import BlockError


class BlockOutputError(BlockError):
    """The block left something in its out-directory that is refused."""


def _check_link(link: Path, root: str) -> bool:
    """True when `link` resolves to a regular file inside `root`, False for a folder there."""
    target = os.path.realpath(link)
    if os.path.commonpath([root, target]) != root:
        raise BlockOutputError(
            f"{link}: a symlink that leaves the out-directory {root} (to {target}); refused"
        )
    if os.path.isfile(target):
        return True
    if os.path.isdir(target):
        return False
    raise BlockOutputError(f"{link}: a symlink to neither a file nor a folder; refused")


def collect_outputs(out_dir: Path) -> tuple[str, ...]:
    """The outputs' paths relative to `out_dir`, sorted; ei-metadata.json files excluded.

    Raises BlockOutputError naming the first entry refused (see the module docstring).
    """
    root = os.path.realpath(out_dir)
    found: list[str] = []
    for folder, dirs, files in os.walk(out_dir, followlinks=False):
        base = Path(folder)
        for name in [*dirs, *files]:
            path = base / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                if name in dirs:
                    dirs.remove(name)
                if not _check_link(path, root):
                    continue
            elif stat.S_ISDIR(mode):
                continue
            elif not stat.S_ISREG(mode):
                raise BlockOutputError(f"{path}: not a regular file; refused")
            if name != METADATA_FILE:
                found.append(str(path.relative_to(out_dir)))
    return tuple(sorted(found))


def read_item_metadata(out_dir: Path) -> dict[str, dict[str, str]]:
    """``OUT/<item>/ei-metadata.json`` of a standalone block, each applied to ``{}``.

    Only real folders count (not symlinks to folders); call after collect_outputs,
    which refuses links that leave the out-directory.
    """
    per_item: dict[str, dict[str, str]] = {}
    for sub in sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        update = read_metadata_update(sub)
        if update is not None:
            per_item[sub.name] = apply_metadata_update({}, update)
    return per_item
