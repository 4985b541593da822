"""Labeling strategies and the deterministic training/testing split (plain functions)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

STRATEGIES = ("infer-from-folder-name", "infer-from-file-name", "keep-unlabeled")
CATEGORY_FOLDERS = ("training", "testing")
UNLABELED_FOLDER = "unlabeled"
TEST_SHARE = (1, 5)  # 20 % testing: the reference platform's 80/20


def clean_label(raw: str | None) -> str | None:
    """A label safe to use as a folder name, or None (unlabeled).

    Labels are normalised, never refused: Unicode NFC; control, format and other
    non-printing characters (Unicode category C*) removed; a backslash (a path
    separator on Windows) becomes ``_``; surrounding whitespace stripped. What is
    left empty, ``.`` or ``..`` is no label: the item is imported unlabeled.
    """
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", raw)
    text = "".join(c for c in text if not unicodedata.category(c).startswith("C"))
    text = text.replace("\\", "_").replace("/", "_").strip()
    return None if text in ("", ".", "..") else text


def infer_label(rel_key: str, strategy: str) -> tuple[str | None, str | None]:
    """(label, category fixed by the layout) for a key relative to the source path.

    ``infer-from-folder-name``: the label is the first folder; a top-level
    ``training/`` or ``testing/`` folder fixes the category and the label is the
    next folder; files in ``unlabeled/`` (at either level) or directly at the root
    stay unlabeled; a key starting with ``/`` has an empty first folder (no
    label). ``infer-from-file-name``: the base name's part before the first ``.``;
    empty means unlabeled. ``keep-unlabeled``: no label. Every label passes
    ``clean_label``.
    """
    if strategy == "keep-unlabeled":
        return None, None
    if strategy == "infer-from-file-name":
        base = rel_key.rsplit("/", 1)[-1]
        return clean_label(base.split(".", 1)[0]), None
    if strategy != "infer-from-folder-name":
        raise ValueError(f"unknown label strategy {strategy!r}; expected one of {STRATEGIES}")
    parts = rel_key.split("/")
    category = None
    if len(parts) > 1 and parts[0] in CATEGORY_FOLDERS:
        category, parts = parts[0], parts[1:]
    if len(parts) < 2 or parts[0] == UNLABELED_FOLDER:
        return None, category
    return clean_label(parts[0]), category


def split(
    new_items: Iterable[tuple[int, str, str | None]],
    existing: Mapping[str | None, tuple[int, int]],
) -> dict[int, str]:
    """Assign ``training``/``testing`` to new items, 80/20 per label.

    ``new_items`` are ``(item_id, sha256, label)``; ``existing`` maps a label to
    ``(items with a category, of which testing)``. Items are taken per label in
    the order of their content hash, and an item goes to testing when that keeps
    the label's testing share at or under 20 %; so the split is a function of the
    content, lands within one item of 80/20 per label, and an item once placed is
    never moved by later syncs or re-runs.
    """
    by_label: dict[str | None, list[tuple[str, int]]] = {}
    for item_id, sha, label in new_items:
        by_label.setdefault(label, []).append((sha, item_id))
    num, den = TEST_SHARE
    out: dict[int, str] = {}
    for label, group in by_label.items():
        total, testing = existing.get(label, (0, 0))
        for _sha, item_id in sorted(group):
            total += 1
            if (testing + 1) * den <= total * num:
                testing += 1
                out[item_id] = "testing"
            else:
                out[item_id] = "training"
    return out
