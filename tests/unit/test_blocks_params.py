"""parameters.json: both forms, schema errors, value checks, argv building."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeloop.blocks.params import build_invocation, load_block_spec, resolve_values
from edgeloop.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "blocks"

CURRENT = {
    "version": 1,
    "type": "transform",
    "info": {
        "name": "Demo",
        "description": "x",
        "operatesOn": "directory",
        "cliArguments": "--fixed 'a b'",
        "allowExtraCliArguments": True,
        "requiredEnvVariables": ["SOME_VAR"],
        "indMetadata": True,
    },
    "parameters": [
        {"name": "Count", "type": "int", "param": "count", "value": 3},
        {"name": "Rate", "type": "float", "param": "rate", "value": "0.5"},
        {
            "name": "Mode",
            "type": "select",
            "param": "mode",
            "value": "fast",
            "valid": ["fast", {"label": "Slow", "value": "slow"}],
        },
        {"name": "Strict", "type": "boolean", "param": "strict", "value": True},
        {"name": "Dry run", "type": "flag", "param": "dry-run"},
        {"name": "Bucket", "type": "bucket", "param": "bucket", "value": ""},
        {"name": "Note", "type": "string", "param": "note", "value": "", "optional": True},
        {"name": "Token", "type": "secret", "param": "api-token", "optional": True},
    ],
}


def write_block(tmp_path: Path, doc: object) -> Path:
    block = tmp_path / "block"
    block.mkdir(exist_ok=True)
    (block / "parameters.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return block


def test_current_form(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    assert spec.name == "Demo"
    assert spec.operates_on == "directory"
    assert spec.cli_arguments == ("--fixed", "a b")
    assert spec.allow_extra_cli_arguments is True
    assert spec.required_env_variables == ("SOME_VAR",)
    assert [p.param for p in spec.parameters] == [
        "count",
        "rate",
        "mode",
        "strict",
        "dry-run",
        "bucket",
        "note",
        "api-token",
    ]
    assert spec.parameter("mode").valid == ("fast", "slow")
    assert spec.parameter("Count").param == "count"  # by display name too
    assert not spec.legacy_form


def test_bare_list_form() -> None:
    spec = load_block_spec(FIXTURES / "reference-style")
    assert spec.legacy_form
    assert spec.operates_on is None
    assert spec.parameter("axis").valid == ("x", "y", "z")
    assert spec.parameter("api-token").env_name == "API_TOKEN"


MALFORMED = [
    ("{not json", "not valid JSON"),
    ({"info": {"operatesOn": "item"}, "parameters": []}, "operatesOn"),
    ({"info": {}, "parameters": [{"name": "A", "type": "integer", "param": "a"}]}, "type"),
    ([{"name": "A", "type": "int"}], "param"),
    ([{"name": "A", "type": "select", "param": "a", "value": "x"}], "valid"),
    ([{"name": "A", "type": "int", "param": "--a"}], "param"),
    ({"info": {"cliArguments": 5}, "parameters": []}, "cliArguments"),
    ({"info": {}}, "parameters"),
    (
        [{"name": "A", "type": "int", "param": "a"}, {"name": "B", "type": "int", "param": "a"}],
        "duplicate parameter",
    ),
]


@pytest.mark.parametrize(("doc", "needle"), MALFORMED)
def test_malformed_parameters_json(tmp_path: Path, doc: object, needle: str) -> None:
    block = write_block(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_block_spec(block)
    text = str(info.value)
    assert str(block / "parameters.json") in text
    assert needle in text


def test_defaults_resolve(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    values = resolve_values(spec, {"bucket": "raw"}, environ={})
    assert values == {
        "count": "3",
        "rate": "0.5",
        "mode": "fast",
        "strict": "1",
        "dry-run": "0",
        "bucket": "raw",
    }


GOOD_VALUES = [
    ({"count": "12"}, "count", "12"),
    ({"Count": 7}, "count", "7"),
    ({"rate": "1e-3"}, "rate", "1e-3"),
    ({"mode": "slow"}, "mode", "slow"),
    ({"strict": "false"}, "strict", "0"),
    ({"strict": "True"}, "strict", "1"),
    ({"strict": 0}, "strict", "0"),
    ({"dry-run": "yes"}, "dry-run", "1"),
    ({"note": "hello world"}, "note", "hello world"),
    ({"api-token": "s3cret"}, "api-token", "s3cret"),
]


@pytest.mark.parametrize(("given", "param", "expected"), GOOD_VALUES)
def test_value_checks_accept(tmp_path: Path, given: dict, param: str, expected: str) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    assert resolve_values(spec, {"bucket": "b", **given}, environ={})[param] == expected


BAD_VALUES = [
    ({"count": "1.5"}, "'count'", "not an integer"),
    ({"count": "ten"}, "'count'", "not an integer"),
    ({"count": True}, "'count'", "not an integer"),
    ({"rate": "fast"}, "'rate'", "not a finite number"),
    ({"rate": "nan"}, "'rate'", "not a finite number"),
    ({"mode": "medium"}, "'mode'", "not one of the valid options"),
    ({"strict": "maybe"}, "'strict'", "not a boolean"),
    ({"bucket": ""}, "'bucket'", "required parameter has no value"),
    ({"nope": "1"}, "'nope'", "unknown parameter"),
]


@pytest.mark.parametrize(("given", "name", "message"), BAD_VALUES)
def test_value_checks_reject(tmp_path: Path, given: dict, name: str, message: str) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    with pytest.raises(ConfigError) as info:
        resolve_values(spec, {"bucket": "b", **given}, environ={})
    assert name in str(info.value)
    assert message in str(info.value)


def test_required_when_not_given(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    with pytest.raises(ConfigError, match="parameter 'bucket': required parameter has no value"):
        resolve_values(spec, {}, environ={})


def test_secret_from_environment(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    values = resolve_values(spec, {"bucket": "b"}, environ={"API_TOKEN": "from-env"})
    assert values["api-token"] == "from-env"


def test_invocation(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    values = resolve_values(spec, {"bucket": "raw", "dry-run": "1", "api-token": "tok"}, environ={})
    inv = build_invocation(
        spec,
        operates_on="directory",
        in_path="/in",
        out_directory="/out",
        hmac_key="k",
        metadata_json='{"a": "1"}',
        values=values,
        extra_args=["--more", "x"],
    )
    assert inv.argv == (
        "--in-directory",
        "/in",
        "--out-directory",
        "/out",
        "--hmac-key",
        "k",
        "--metadata",
        '{"a": "1"}',
        "--count",
        "3",
        "--rate",
        "0.5",
        "--mode",
        "fast",
        "--strict",
        "1",
        "--dry-run",
        "--bucket",
        "raw",
        "--fixed",
        "a b",
        "--more",
        "x",
    )
    assert inv.env == {"API_TOKEN": "tok"}
    assert "tok" not in inv.argv
    assert inv.values["api-token"] == "***"


def test_unset_flag_is_not_passed(tmp_path: Path) -> None:
    spec = load_block_spec(write_block(tmp_path, CURRENT))
    values = resolve_values(spec, {"bucket": "raw"}, environ={})
    inv = build_invocation(
        spec,
        operates_on="standalone",
        in_path=None,
        out_directory="/o",
        hmac_key="",
        metadata_json="{}",
        values=values,
    )
    assert "--dry-run" not in inv.argv
    assert "--in-directory" not in inv.argv and "--in-file" not in inv.argv


def test_extra_arguments_refused_unless_allowed(tmp_path: Path) -> None:
    doc = {**CURRENT, "info": {**CURRENT["info"], "allowExtraCliArguments": False}}
    spec = load_block_spec(write_block(tmp_path, doc))
    values = resolve_values(spec, {"bucket": "raw"}, environ={})
    with pytest.raises(ConfigError, match="allowExtraCliArguments"):
        build_invocation(
            spec,
            operates_on="directory",
            in_path="/in",
            out_directory="/o",
            hmac_key="",
            metadata_json="{}",
            values=values,
            extra_args=["--x"],
        )
