from __future__ import annotations

import hashlib

import pytest

from edgeloop.ingest.label import id_like_labels
from edgeloop.ingest.labeling import clean_label, infer_label, split

FOLDER = "infer-from-folder-name"
FILE = "infer-from-file-name"
KEEP = "keep-unlabeled"


@pytest.mark.parametrize(
    ("key", "strategy", "label", "category"),
    [
        ("cars/cars.01741.jpg", FOLDER, "cars", None),
        ("unknown/unknown.test_2547.jpg", FOLDER, "unknown", None),
        ("unlabeled/cars.02066.jpg", FOLDER, None, None),
        ("root.jpg", FOLDER, None, None),
        ("training/cars/cars.00006.jpg", FOLDER, "cars", "training"),
        ("testing/unknown/unknown.test_1012.jpg", FOLDER, "unknown", "testing"),
        ("testing/unlabeled/x.jpg", FOLDER, None, "testing"),
        ("training/loose.jpg", FOLDER, None, "training"),
        ("cars/nested/deeper/a.jpg", FOLDER, "cars", None),
        ("my label/a b c.png", FOLDER, "my label", None),
        ("dïgits ✓/ü.1.2.png", FOLDER, "dïgits ✓", None),
        ("unlabeled/nested/x.png", FOLDER, None, None),
        ("cars/cars.01741.jpg", FILE, "cars", None),
        ("a/b/unknown.test_2547.jpg", FILE, "unknown", None),
        ("x/.hidden.png", FILE, None, None),
        ("several.dots.in.name.png", FILE, "several", None),
        ("spaced name.v2.png", FILE, "spaced name", None),
        ("ünï.png", FILE, "ünï", None),
        ("training/cars/a.jpg", FILE, "a", None),
        ("cars/cars.01741.jpg", KEEP, None, None),
        ("training/cars/a.jpg", KEEP, None, None),
    ],
)
def test_infer_label(key: str, strategy: str, label: str | None, category: str | None) -> None:
    assert infer_label(key, strategy) == (label, category)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown label strategy 'guess'"):
        infer_label("a/b.png", "guess")


def _items(n: int, labels: tuple[str | None, ...] = ("a", "b", None)) -> list:
    return [
        (i, hashlib.sha256(f"content {i}".encode()).hexdigest(), labels[i % len(labels)])
        for i in range(n)
    ]


def test_split_ratio_on_500_items() -> None:
    result = split(_items(500), {})
    testing = sum(1 for c in result.values() if c == "testing")
    assert abs(testing / 500 - 0.20) <= 0.02
    for label in ("a", "b", None):
        ids = [i for i, _, lab in _items(500) if lab == label]
        share = sum(result[i] == "testing" for i in ids) / len(ids)
        assert abs(share - 0.20) <= 0.02, label


def test_split_is_a_function_of_content_not_of_order() -> None:
    items = _items(200)
    assert split(items, {}) == split(list(reversed(items)), {})


def test_split_in_batches_stays_near_ratio_and_never_moves() -> None:
    items = _items(500)
    placed: dict[int, str] = {}
    for start in range(0, 500, 37):  # many small syncs
        counts: dict[str | None, tuple[int, int]] = {}
        for i, _, label in items[:start]:
            total, testing = counts.get(label, (0, 0))
            counts[label] = (total + 1, testing + (placed[i] == "testing"))
        new = split(items[start : start + 37], counts)
        assert not set(new) & set(placed)
        placed.update(new)
    testing = sum(1 for c in placed.values() if c == "testing")
    assert abs(testing / 500 - 0.20) <= 0.02


@pytest.mark.parametrize(
    ("key", "strategy", "label"),
    [
        ("../escape.png", FOLDER, None),
        ("./x.png", FOLDER, None),
        ("/etc/passwd.png", FOLDER, None),
        ("training/../x.png", FOLDER, None),
        ("tab\tcar/x.png", FOLDER, "tabcar"),
        ("new\nline/x.png", FOLDER, "newline"),
        (" spaced /x.png", FOLDER, "spaced"),
        ("back\\slash/x.png", FOLDER, "back_slash"),
        ("\x00\x07/x.png", FOLDER, None),
        ("zero\u200bwidth/x.png", FOLDER, "zerowidth"),
        ("cars//a.png", FOLDER, "cars"),
        ("../escape.png", FILE, "escape"),
        ("a/..png", FILE, None),
        ("a/ .png", FILE, None),
        ("a/bell\x07.png", FILE, "bell"),
        ("a/..\\..\\x.png", FILE, None),
    ],
)
def test_hostile_keys_give_safe_labels(key: str, strategy: str, label: str | None) -> None:
    got, _ = infer_label(key, strategy)
    assert got == label
    if got is not None:
        assert got not in ("", ".", "..") and got == got.strip()
        assert not any(c in got for c in "/\\") and all(c.isprintable() for c in got)


@pytest.mark.parametrize(
    ("raw", "label"),
    [(None, None), ("", None), (".", None), ("..", None), (" .. ", None), ("ok", "ok")],
)
def test_clean_label(raw: str | None, label: str | None) -> None:
    assert clean_label(raw) == label


def test_labels_like_file_ids_warn_and_classes_do_not() -> None:
    ids = {f"cat_{i:04d}": 1 for i in range(600)}
    warning = id_like_labels(ids, FILE)
    assert warning and "600 of 600 labels hold a single item" in warning
    assert id_like_labels({"cat": 300, "dog": 300}, FILE) is None
    assert id_like_labels({f"x{i}": 1 for i in range(5)}, FILE) is None  # too few to tell
