from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from edgeloop.config import check_pipeline, load_pipeline, load_pipelines
from edgeloop.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pipelines"


def s3_step(**block) -> dict:
    return {
        "name": "import",
        "builtinTransformationBlock": {
            "type": "s3-to-project",
            "path": "s3://my-bucket/data/",
            **block,
        },
    }


def write(tmp_path: Path, doc, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def messages(path: Path) -> list[str]:
    return [str(e) for e in check_pipeline(path)]


def test_bare_list_takes_id_and_project_from_file_name(tmp_path: Path) -> None:
    p = load_pipeline(write(tmp_path, [s3_step(awsConnId="c1")], "cars-import.json"))
    assert (p.id, p.project, p.schedule) == ("cars-import", "cars-import", "@daily")
    step = p.steps[0]
    assert (step.bucket, step.prefix, step.aws_conn_id) == ("my-bucket", "data/", "c1")
    assert (step.label_strategy, step.category, step.sync_deletions) == (
        "infer-from-folder-name",
        "split",
        False,
    )


def test_object_form_with_interval_and_cron(tmp_path: Path) -> None:
    doc = {
        "id": "x",
        "name": "X",
        "project": "proj",
        "intervalStr": "15m",
        "description": "hello",
        "steps": [s3_step()],
    }
    p = load_pipeline(write(tmp_path, doc))
    assert (p.id, p.project, p.schedule, p.description) == (
        "x",
        "proj",
        timedelta(minutes=15),
        "hello",
    )
    doc.pop("intervalStr")
    doc["schedule"] = "*/5 * * * *"
    assert load_pipeline(write(tmp_path, doc)).schedule == "*/5 * * * *"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"name": "x", "steps": [s3_step(category="splt")]},
            [
                "p.json: $.steps[0].builtinTransformationBlock.category: invalid value "
                "(expected one of ['training', 'testing', 'split'], got 'splt')"
            ],
        ),
        (
            {"name": "x", "steps": [s3_step(labelStrategy="guess")]},
            ["$.steps[0].builtinTransformationBlock.labelStrategy", "got 'guess'"],
        ),
        ({"name": "x", "intervalStr": "5x", "steps": [s3_step()]}, ["$.intervalStr", "got '5x'"]),
        (
            {"name": "x", "schedule": "every day", "steps": [s3_step()]},
            ["$.schedule", "a cron expression", "got 'every day'"],
        ),
        (
            {"name": "x", "steps": [s3_step(path="http://bucket/x")]},
            ["$.steps[0].builtinTransformationBlock.path", "got 'http://bucket/x'"],
        ),
        ({"name": "x", "steps": []}, ["$.steps", "at least 1 item"]),
        ({"steps": [s3_step()]}, ["'name' is a required property"]),
        ({"name": "x", "steps": [s3_step(colour="red")]}, ["'colour' was unexpected"]),
        (
            {"name": "x", "steps": [s3_step(accessKey="AKIA")]},
            ["'accessKey' and 'secretKeyEncrypted' go together"],
        ),
        ("just a string", ["$", "expected object or array"]),
    ],
)
def test_schema_errors_name_file_path_expected_and_value(tmp_path: Path, doc, expected) -> None:
    found = "\n".join(messages(write(tmp_path, doc)))
    for part in expected:
        assert part in found


def test_plaintext_secret_is_rejected_with_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "x", "steps": [s3_step(accessKey="AK", secretKey="hunter2")]})
    found = "\n".join(messages(path))
    assert "$.steps[0].builtinTransformationBlock.secretKey" in found
    assert "plaintext secrets are not accepted" in found
    assert "edgeloop encrypt-secret" in found and "awsConnId" in found
    assert "hunter2" not in found


def test_seed_example_is_refused_naming_each_action_not_built() -> None:
    errors = messages(FIXTURES / "seed_example.json")
    for action in ("refreshDataExplorer", "retrainModel", "createVersion", "buildBinary"):
        assert any(f"project action '{action}' is not built yet" in e for e in errors), action
    assert not any("s3-to-project" in e and "$[0]" in e for e in errors)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[1,")
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        load_pipeline(path)


def test_one_bad_config_does_not_hide_the_others(tmp_path: Path) -> None:
    write(tmp_path, [s3_step()], "good.json")
    write(tmp_path, {"name": "x", "steps": [s3_step(category="nope")]}, "bad.json")
    write(tmp_path, {"id": "good", "name": "dup", "steps": [s3_step()]}, "zz-dup.json")
    pipelines, errors = load_pipelines(tmp_path)
    assert [p.id for p in pipelines] == ["good"]
    assert sorted(Path(f).name for f in errors) == ["bad.json", "zz-dup.json"]
    assert "already used by" in str(errors[str(tmp_path / "zz-dup.json")])


def test_every_shipped_pipeline_is_valid(repo_root: Path) -> None:
    for path in sorted((repo_root / "include" / "pipelines").glob("*.json")):
        assert check_pipeline(path) == [], path
