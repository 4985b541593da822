"""ei-metadata.json: schema validation and add / replace / replace-checks semantics."""

from __future__ import annotations

import pytest

from edgeloop.blocks.metadata import (
    MAX_KEYS,
    MetadataUpdate,
    apply_metadata_update,
    is_check_key,
    parse_metadata_update,
    read_metadata_update,
    write_metadata_update,
)
from edgeloop.errors import ConfigError

ITEM = {
    "subject": "AMS_001",
    "age": "34",
    "ei_check": "1",
    "ei_check_ppg": "1",
    "ei_check_labels": "0",
}

CASES = [
    # (action, update, expected)
    ("add", {"bmi": "22.1"}, {**ITEM, "bmi": "22.1"}),
    ("add", {"age": "35", "ei_check_labels": "1"}, {**ITEM, "age": "35", "ei_check_labels": "1"}),
    ("add", {}, ITEM),
    ("replace", {"bmi": "22.1"}, {"bmi": "22.1"}),
    ("replace", {}, {}),
    ("replace", {"ei_check": "0"}, {"ei_check": "0"}),
    # replace-checks: all old checks go, the new ones come, the rest stays
    (
        "replace-checks",
        {"ei_check": "0", "ei_check_hr": "0"},
        {"subject": "AMS_001", "age": "34", "ei_check": "0", "ei_check_hr": "0"},
    ),
    ("replace-checks", {}, {"subject": "AMS_001", "age": "34"}),
    # keys that are not checks are not touched by replace-checks
    (
        "replace-checks",
        {"age": "99", "ei_check": "1"},
        {"subject": "AMS_001", "age": "34", "ei_check": "1"},
    ),
]


@pytest.mark.parametrize(("action", "update", "expected"), CASES)
def test_apply(action: str, update: dict[str, str], expected: dict[str, str]) -> None:
    before = dict(ITEM)
    result = apply_metadata_update(ITEM, MetadataUpdate(action, update))
    assert result == expected
    assert before == ITEM  # the input is not modified


@pytest.mark.parametrize(
    ("key", "is_check"),
    [
        ("ei_check", True),
        ("ei_check_ppg", True),
        ("ei_checker", False),
        ("ei_check_", True),
        ("check", False),
        ("EI_CHECK", False),
        ("x_ei_check", False),
    ],
)
def test_is_check_key(key: str, is_check: bool) -> None:
    assert is_check_key(key) is is_check


BAD = [
    ({"version": 2, "action": "add", "metadata": {}}, "$.version"),
    ({"version": 1, "action": "merge", "metadata": {}}, "$.action"),
    ({"version": 1, "action": "add", "metadata": {"ei_check": [1]}}, "$.metadata.ei_check"),
    ({"version": 1, "action": "add", "metadata": {"plot": {"x": 1}}}, "$.metadata.plot"),
    ({"version": 1, "action": "add", "metadata": {"a b": [], "c": "d"}}, "$.metadata['a b']"),
    ({"version": 1, "action": "add", "metadata": {"": "x"}}, "$.metadata"),
    ({"version": 1, "action": "add"}, "metadata"),
    ({"version": 1, "action": "add", "metadata": {}, "extra": 1}, "extra"),
    ({"version": 1, "action": "add", "metadata": []}, "$.metadata"),
    ([], "$"),
]


@pytest.mark.parametrize(("doc", "where"), BAD)
def test_malformed_documents_name_the_file_and_path(doc: object, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_metadata_update(doc, source="out/ei-metadata.json")
    text = str(info.value)
    assert text.startswith("out/ei-metadata.json")
    assert where in text


def test_read_and_write_round_trip(tmp_path) -> None:
    assert read_metadata_update(tmp_path) is None
    write_metadata_update(tmp_path, "replace-checks", {"ei_check": "1"})
    update = read_metadata_update(tmp_path)
    assert update is not None
    assert (update.action, update.metadata) == ("replace-checks", {"ei_check": "1"})


def test_invalid_json_names_file_and_position(tmp_path) -> None:
    (tmp_path / "ei-metadata.json").write_text('{"version": 1,')
    with pytest.raises(ConfigError, match=r"ei-metadata.json: not valid JSON: .* line 1"):
        read_metadata_update(tmp_path)


def test_write_refuses_invalid(tmp_path) -> None:
    with pytest.raises(ConfigError):
        write_metadata_update(tmp_path, "add", {"n": 1})  # type: ignore[dict-item]
    assert not (tmp_path / "ei-metadata.json").exists()


def test_public_block_echo_is_accepted() -> None:
    """What the reference platform's public blocks write: the whole --metadata object
    echoed back (dataItemInfo included) with checks as numbers."""
    doc = {
        "version": 1,
        "action": "add",
        "metadata": {
            "subject": "AMS_001",
            "dataItemInfo": {"id": 7, "name": "AMS_001", "totalFileCount": 4},
            "ei_check_files_present": 1,
            "ei_check": 0,
            "hr_correlation": 0.91,
            "large": 1e21,
            "normalized": True,
            "flagged": False,
            "note": None,
        },
    }
    update = parse_metadata_update(doc, source="out/ei-metadata.json")
    assert update.metadata == {
        "subject": "AMS_001",
        "ei_check_files_present": "1",
        "ei_check": "0",
        "hr_correlation": "0.91",
        "large": "1e+21",
        "normalized": "1",
        "flagged": "0",
        "note": "",
    }


@pytest.mark.parametrize("item_info", [{"id": 1}, "x", [1, 2], None, 3])
def test_echoed_data_item_info_is_ignored_whatever_its_form(item_info: object) -> None:
    doc = {"version": 1, "action": "replace", "metadata": {"dataItemInfo": item_info, "a": "b"}}
    assert parse_metadata_update(doc, source="m").metadata == {"a": "b"}


def test_too_many_keys_refused_before_validation() -> None:
    doc = {"version": 1, "action": "add", "metadata": {f"k{i}": "v" for i in range(MAX_KEYS + 1)}}
    with pytest.raises(ConfigError, match=rf"m: \$.metadata: more than {MAX_KEYS} keys"):
        parse_metadata_update(doc, source="m")
    doc["metadata"].popitem()
    assert len(parse_metadata_update(doc, source="m").metadata) == MAX_KEYS


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_not_json(tmp_path, constant: str) -> None:
    (tmp_path / "ei-metadata.json").write_text(
        '{"version": 1, "action": "add", "metadata": {"x": ' + constant + "}}"
    )
    with pytest.raises(ConfigError, match=f"not valid JSON: {constant} is not JSON"):
        read_metadata_update(tmp_path)
