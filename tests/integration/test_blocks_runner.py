"""The block runner against real block folders run as real processes."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from edgeloop.blocks import cli as block_cli
from edgeloop.blocks.runner import (
    BlockFailed,
    BlockTimeout,
    DockerUnavailable,
    block_command,
    docker_unavailable_reason,
    ensure_venv,
    run_block,
)
from edgeloop.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "blocks"


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Block venvs (and their bytecode cache) shared by every block test of the session."""
    path = tmp_path_factory.getbasetemp() / "edgeloop-block-venvs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _venv_root(venvs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs without an explicit `venvs` (and their bytecode cache) stay in the session's tmp."""
    monkeypatch.setenv("EDGELOOP_BLOCK_VENVS", str(venvs))


@pytest.fixture
def accel_csv(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "walk.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "x", "y", "z"])
        for i in range(10):
            w.writerow([1000 + 20 * i, i - 5, 2 * i, 0.5])
    return path


def test_reference_style_block_runs_unmodified(
    tmp_path: Path, accel_csv: Path, venvs: Path
) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    result = run_block(
        FIXTURES / "reference-style",
        in_file=accel_csv,
        out_directory=out,
        metadata={"subject": "AMS_001", "ei_check": "1"},
        params={"axis": "y", "normalize": "true", "verbose": "1"},
        extra_args=["--unknown-to-the-block", "7"],
        last_successful_run="2026-11-01T00:00:00.000Z",
        env={"EI_ORGANIZATION_ID": "42", "API_TOKEN": "tok"},
        venvs=venvs,
        on_line=lines.append,
    )
    assert result.outputs == ("walk_y.csv",)
    rows = (out / "walk_y.csv").read_text().split()
    assert rows[0] == "y" and float(rows[-1]) == 1.0  # normalized: max |2*9*1.5| -> 1
    assert float(rows[1]) == 0.0
    # the block does not declare --hmac-key: parse_known_args leaves it with the extras
    assert result.metadata.pop("extra") == "--hmac-key  --unknown-to-the-block 7"
    # The block echoes --metadata back (dataItemInfo ignored) with numbers and booleans
    # as values: stored as strings ("1", "250", "1.0", true -> "1").
    written = json.loads((out / "ei-metadata.json").read_text())["metadata"]
    assert written["dataItemInfo"]["name"] == "walk.csv"
    assert written["ei_check_files_present"] == 1 and written["token_seen"] is True
    assert result.metadata == {
        "subject": "AMS_001",
        "ei_check": "1",
        "axis": "y",
        "normalized": "1",
        "window_length": "250",
        "peak": "1.0",
        "subject_seen": "AMS_001",
        "item_name": "walk.csv",
        "org": "42",
        "last_run": "2026-11-01T00:00:00.000Z",
        "token_seen": "1",
        "ei_check_files_present": "1",
    }
    assert "in file" in " ".join(lines)  # output was streamed line by line
    assert result.venv is not None and result.venv.parent == venvs


def test_string_boolean_false_passes_zero(tmp_path: Path, accel_csv: Path, venvs: Path) -> None:
    result = run_block(
        FIXTURES / "reference-style",
        in_file=accel_csv,
        out_directory=tmp_path / "out",
        params={"normalize": "false"},
        venvs=venvs,
    )
    assert result.metadata["normalized"] == "0"
    assert "--normalize" in result.command
    assert result.command[result.command.index("--normalize") + 1] == "0"
    assert "--verbose" not in result.command


def test_exit_code_one_reports_code_and_last_lines(tmp_path: Path) -> None:
    (tmp_path / "item").mkdir()
    with pytest.raises(BlockFailed) as info:
        run_block(
            FIXTURES / "exit-one", in_directory=tmp_path / "item", out_directory=tmp_path / "out"
        )
    err = info.value
    assert err.exit_code == 1
    text = str(err)
    assert "exit code 1" in text
    assert "sensor file is truncated" in text
    assert "line 50" in text
    assert "line 1\n" not in text  # only the last lines


def test_time_limit_stops_the_block(tmp_path: Path) -> None:
    with pytest.raises(BlockTimeout) as info:
        run_block(
            FIXTURES / "sleeper",
            out_directory=tmp_path / "out",
            params={"seconds": "60"},
            time_limit=3,
        )
    assert "time limit of 3 s" in str(info.value)
    assert "sleeping 60 s" in str(info.value)


def test_bad_parameter_value_fails_before_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_block(FIXTURES / "sleeper", out_directory=tmp_path / "out", params={"seconds": "soon"})
    assert "parameter 'seconds'" in str(info.value)
    assert "not an integer" in str(info.value)


def test_malformed_parameters_json(tmp_path: Path) -> None:
    block = tmp_path / "block"
    shutil.copytree(FIXTURES / "sleeper", block)
    (block / "parameters.json").write_text(
        json.dumps(
            {
                "info": {"operatesOn": "standalone"},
                "parameters": [{"name": "S", "type": "number", "param": "seconds"}],
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        run_block(block, out_directory=tmp_path / "out")
    assert "parameters.json: $.parameters[0].type" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing started


def test_malformed_ei_metadata(tmp_path: Path) -> None:
    (tmp_path / "item").mkdir()
    with pytest.raises(ConfigError) as info:
        run_block(
            FIXTURES / "bad-metadata",
            in_directory=tmp_path / "item",
            out_directory=tmp_path / "out",
        )
    assert "ei-metadata.json" in str(info.value)
    assert "$.action" in str(info.value) or "$.metadata.ei_check" in str(info.value)


def test_wrong_input_kind(tmp_path: Path, accel_csv: Path) -> None:
    with pytest.raises(ConfigError, match="operates on a directory"):
        run_block(FIXTURES / "exit-one", in_file=accel_csv, out_directory=tmp_path / "o")
    with pytest.raises(ConfigError, match="standalone"):
        run_block(FIXTURES / "sleeper", in_file=accel_csv, out_directory=tmp_path / "o")


def test_no_requirements_runs_in_project_env(tmp_path: Path) -> None:
    (tmp_path / "item").mkdir()
    with pytest.raises(BlockFailed) as info:
        run_block(
            FIXTURES / "exit-one", in_directory=tmp_path / "item", out_directory=tmp_path / "out"
        )
    assert info.value.exit_code == 1
    assert block_command(FIXTURES / "exit-one") == ["python3", "-u", "transform.py"]


def test_venv_built_once_and_rebuilt_when_requirements_change(tmp_path: Path, venvs: Path) -> None:
    block = tmp_path / "block"
    shutil.copytree(FIXTURES / "with-requirements", block)
    assert block_command(block) == ["python3", "-u", "show_env.py", "--greeting", "hello"]
    first = run_block(block, out_directory=tmp_path / "o1", venvs=venvs)
    report = json.loads((tmp_path / "o1" / "report.json").read_text())
    assert first.venv is not None
    assert report["greeting"] == "hello"  # CMD appended to ENTRYPOINT
    assert report["prefix"] == str(first.venv)
    assert report["six"].startswith(str(first.venv))  # installed in the block's venv
    marker = first.venv / ".edgeloop-complete"
    stamp = marker.stat().st_mtime_ns

    again, built = ensure_venv(block / "requirements.txt", venvs)
    assert (again, built) == (first.venv, False)
    second = run_block(block, out_directory=tmp_path / "o2", venvs=venvs)
    assert second.venv == first.venv
    assert marker.stat().st_mtime_ns == stamp

    (block / "requirements.txt").write_text("six==1.16.0\n")
    third = run_block(block, out_directory=tmp_path / "o3", venvs=venvs)
    assert third.venv != first.venv
    report = json.loads((tmp_path / "o3" / "report.json").read_text())
    assert report["six"].startswith(str(third.venv))


def test_docker_runtime_says_no_engine(tmp_path: Path) -> None:
    reason = docker_unavailable_reason()
    if reason is None:
        pytest.skip("a Docker engine is reachable here: the docker runtime is not exercised")
    with pytest.raises(DockerUnavailable) as info:
        run_block(FIXTURES / "with-requirements", out_directory=tmp_path / "o", runtime="docker")
    assert "no Docker engine is reachable" in str(info.value)
    assert "--runtime local" in str(info.value)


def test_cli_prints_final_metadata(
    tmp_path: Path,
    accel_csv: Path,
    venvs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGELOOP_BLOCK_VENVS", str(venvs))
    parser = argparse.ArgumentParser()
    block_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "block",
            "run",
            str(FIXTURES / "reference-style"),
            "--in-file",
            str(accel_csv),
            "--out-directory",
            str(tmp_path / "out"),
            "--metadata",
            '{"subject": "S1"}',
            "--param",
            "axis=z",
            "--param",
            "Normalize=0",
        ]
    )
    assert args.handler(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "dataItemInfo" not in doc["metadata"]
    assert doc["metadata"]["ei_check_files_present"] == "1"
    assert doc["metadata"]["axis"] == "z"
    assert doc["metadata"]["subject"] == "S1"
    assert doc["metadata"]["normalized"] == "0"


def test_cli_rejects_malformed_param(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    block_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "block",
            "run",
            str(FIXTURES / "sleeper"),
            "--out-directory",
            str(tmp_path),
            "--param",
            "seconds",
        ]
    )
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        args.handler(args)


def test_environment_is_not_leaked_into_secret_argv(
    tmp_path: Path, accel_csv: Path, venvs: Path
) -> None:
    os.environ.pop("API_TOKEN", None)
    result = run_block(
        FIXTURES / "reference-style",
        in_file=accel_csv,
        out_directory=tmp_path / "out",
        params={"api-token": "hunter2"},
        venvs=venvs,
    )
    assert result.metadata["token_seen"] == "1"
    assert "hunter2" not in " ".join(result.command)


def test_required_env_variable_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = tmp_path / "block"
    shutil.copytree(FIXTURES / "sleeper", block)
    doc = json.loads((block / "parameters.json").read_text())
    doc["info"]["requiredEnvVariables"] = ["EDGELOOP_TEST_NEEDED"]
    (block / "parameters.json").write_text(json.dumps(doc))
    monkeypatch.delenv("EDGELOOP_TEST_NEEDED", raising=False)
    with pytest.raises(ConfigError) as info:
        run_block(block, out_directory=tmp_path / "o", params={"seconds": "0"})
    assert "EDGELOOP_TEST_NEEDED" in str(info.value)
    result = run_block(
        block,
        out_directory=tmp_path / "o",
        params={"seconds": "0"},
        env={"EDGELOOP_TEST_NEEDED": "yes"},
    )
    assert result.output_tail[-1] == "woke up"


def test_docker_command_mounts_and_rewrites_paths(tmp_path: Path, accel_csv: Path) -> None:
    from edgeloop.blocks.params import load_block_spec
    from edgeloop.blocks.runtimes import _docker_command, _image_tag

    spec = load_block_spec(FIXTURES / "reference-style")
    out = tmp_path / "out"
    argv = ["--in-file", str(accel_csv), "--out-directory", str(out), "--axis", "x"]
    cmd = _docker_command(
        spec,
        argv,
        in_path=accel_csv,
        out_dir=out,
        env={"EI_API_KEY": "k", "API_TOKEN": "secret"},
        container="c1",
    )
    assert cmd[:5] == ["docker", "run", "--rm", "--name", "c1"]
    assert f"{accel_csv.parent}:/data/in:ro" in cmd and f"{out}:/data/out" in cmd
    assert cmd[cmd.index("EI_API_KEY") - 1 : cmd.index("EI_API_KEY") + 1] == ["-e", "EI_API_KEY"]
    assert "secret" not in " ".join(cmd)  # values come from the environment
    image = _image_tag(spec)
    assert image.startswith("edgeloop-block-reference-style:")
    assert cmd[cmd.index(image) + 1 :] == [
        "--in-file",
        "/data/in/walk.csv",
        "--out-directory",
        "/data/out",
        "--axis",
        "x",
    ]


def test_cli_metadata_scalars_become_strings_and_objects_are_refused(tmp_path: Path) -> None:
    meta = block_cli._parse_metadata(
        '{"a": 1, "b": true, "c": null, "d": "x", "dataItemInfo": {"id": 3}}'
    )
    assert meta == {"a": "1", "b": "1", "c": "", "d": "x"}
    with pytest.raises(ConfigError, match=r"--metadata: \$.e: not a scalar"):
        block_cli._parse_metadata('{"e": [1]}')
    path = tmp_path / "meta.json"
    path.write_text('{"f": {"g": 1}}')
    with pytest.raises(ConfigError, match=rf"{path}: \$.f: not a scalar"):
        block_cli._parse_metadata(f"@{path}")
