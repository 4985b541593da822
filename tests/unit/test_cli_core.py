"""The pipeline-core subcommands of `edgeloop`, called through its entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edgeloop.catalog.store import Catalog
from edgeloop.cli import main
from edgeloop.summary import summarize

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(edgeloop_home: Path) -> Path:
    return edgeloop_home


def test_validate_ok_and_errors(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(REPO / "include" / "pipelines")]) == 0
    assert "ok: " in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "x",
                "intervalStr": "1w",
                "steps": [
                    {
                        "name": "s",
                        "builtinTransformationBlock": {
                            "type": "s3-to-project",
                            "path": "s3://bkt/p/",
                        },
                    }
                ],
            }
        )
    )
    assert main(["validate", str(bad), str(REPO / "include" / "pipelines" / "demo.json")]) == 1
    out = capsys.readouterr()
    assert f"error: {bad}: $.intervalStr: invalid value" in out.err and "got '1w'" in out.err
    assert "ok: " in out.out


@pytest.mark.parametrize(
    "text",
    [
        "[1,",
        "\xff\xfe",
        "[" * 100_000,
        '{"name": "x", "intervalStr": "99999999999d", "steps": [1]}',
        '[{"name": "x", "builtinTransformationBlock": {"type": "project-action"}}]',
        '[{"name": "x", "builtinTransformationBlock": {"type": "project-action", '
        '"buildBinaryModelType": "int8"}}]',
        "null",
        '{"name": "x", "name": "y"}',
    ],
)
def test_validate_on_malformed_files_prints_errors_never_a_traceback(
    tmp_path: Path, capsys, text: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: " in err and "Traceback" not in err


def test_validate_reports_what_the_builder_refuses(tmp_path: Path, capsys) -> None:
    seed = REPO / "tests" / "fixtures" / "pipelines" / "seed_example.json"
    assert main(["validate", str(seed)]) == 0
    assert f"ok: {seed}" in capsys.readouterr().out
    no_retrain = [s for s in json.loads(seed.read_text()) if s["name"] != "Retrain model"]
    (tmp_path / "no_retrain.json").write_text(json.dumps(no_retrain))
    assert main(["validate", str(tmp_path / "no_retrain.json")]) == 1
    err = capsys.readouterr().err
    assert "$[3].builtinTransformationBlock.buildBinary" in err
    assert "requires 'Retrain model' to also be enabled" in err
    (tmp_path / "no_retrain.json").unlink()
    step = {
        "name": "s",
        "builtinTransformationBlock": {"type": "s3-to-project", "path": "s3://bkt/"},
    }
    (tmp_path / "a.json").write_text(json.dumps({"id": "same", "name": "a", "steps": [step]}))
    (tmp_path / "b.json").write_text(json.dumps({"id": "same", "name": "b", "steps": [step]}))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"ok: {tmp_path / 'a.json'}" in out.out
    assert f"error: {tmp_path / 'b.json'}: $.id: pipeline id 'same' is already used" in out.err


def test_encrypt_secret_round_trips_with_airflow_key(monkeypatch, capsys) -> None:
    from airflow.sdk.crypto import get_fernet
    from cryptography.fernet import Fernet

    from edgeloop.secrets import decrypt_secret

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    get_fernet.cache_clear()
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO("my-secret-key\n"))
        assert main(["encrypt-secret"]) == 0
        token = capsys.readouterr().out.strip()
        assert "my-secret-key" not in token
        assert decrypt_secret(token) == "my-secret-key"
        monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
        get_fernet.cache_clear()
        with pytest.raises(Exception, match="cannot decrypt with Airflow's fernet key"):
            decrypt_secret(token)
    finally:
        get_fernet.cache_clear()


def test_summary_items_and_stats(home: Path, capsys) -> None:
    assert main(["summary", "demo"]) == 1
    assert "no run of pipeline 'demo'" in capsys.readouterr().err
    summarize(
        "demo",
        "demo",
        "run-1",
        sync_results=[{"listed": 3, "new": 2, "skipped": 1}, None],
        label_results=[{"labeled": 2, "warnings": ["labels look like file ids"]}],
    )
    assert main(["summary", "demo"]) == 0
    out = capsys.readouterr().out
    assert "run run-1" in out and "listed 3, new 2, updated 0" in out and "skipped 1" in out
    assert main(["summary", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sync"]["new"] == 2
    assert main(["items", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["stats", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"label": {}, "category": {}}
    assert Catalog.from_settings().last_run("demo")["run_id"] == "run-1"
