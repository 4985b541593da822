"""The config loader: JSON → checks → the frozen typed model; every defect of issue 7."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest

from edgeloop.config import (
    BlockStep,
    ImportStep,
    ProjectActionStep,
    errors_of,
    load_pipeline,
    load_pipelines,
)
from edgeloop.config.schedule import PRESETS
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
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def messages(path: Path) -> list[str]:
    try:
        load_pipeline(path)
    except ConfigError as exc:
        return [str(e) for e in errors_of(exc)]
    return []


def test_bare_list_takes_id_and_project_from_file_name(tmp_path: Path) -> None:
    p = load_pipeline(write(tmp_path, [s3_step(awsConnId="c1")], "cars-import.json"))
    assert (p.id, p.project, p.schedule) == ("cars-import", "cars-import", "@daily")
    step = p.steps[0]
    assert isinstance(step, ImportStep) and step.where == "$[0]"
    src = step.source
    assert (src.scheme, src.bucket, src.prefix, src.conn_id) == ("s3", "my-bucket", "data/", "c1")
    assert ".txt" not in src.file_types
    assert (step.label_strategy, step.category, step.sync_deletions) == (
        "infer-from-folder-name",
        "split",
        False,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("interval", "schedule"),
    [
        ("15m", "*/15 * * * *"),
        ("1m", "* * * * *"),
        ("60m", "0 * * * *"),
        ("1h", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("24h", "0 0 * * *"),
        ("1d", "0 0 * * *"),
        ("7m", timedelta(minutes=7)),
        ("5h", timedelta(hours=5)),
        ("2d", timedelta(days=2)),
        ("366d", timedelta(days=366)),
    ],
)
def test_interval_becomes_cron_when_exact(tmp_path: Path, interval, schedule) -> None:
    doc = {"name": "X", "intervalStr": interval, "steps": [s3_step()]}
    assert load_pipeline(write(tmp_path, doc)).schedule == schedule


def test_object_form_with_cron_preset_and_null(tmp_path: Path) -> None:
    doc = {"id": "x", "name": "X", "project": "proj", "description": "hi", "steps": [s3_step()]}
    for schedule in ("*/5 * * * *", "@weekly", None):
        p = load_pipeline(write(tmp_path, {**doc, "schedule": schedule}))
        assert (p.id, p.project, p.description, p.schedule) == ("x", "proj", "hi", schedule)


def test_notification_fields_and_their_defaults(tmp_path: Path) -> None:
    from edgeloop.config.model import Notifications

    doc = {"id": "x", "name": "X", "steps": [s3_step()]}
    assert load_pipeline(write(tmp_path, doc)).notifications == Notifications(
        (), "on_new_data", "smtp_default", None, None, None
    )
    doc |= {
        "emailRecipients": ["ops@example.org", "ml@example.org"],
        "whenToEmail": "always",
        "emailConnId": "smtp_ops",
        "notificationWebhook": "https://hooks.example.org/edgeloop?team=ml",
        "webhookConnId": "edgeloop_webhook",
        "organizationId": 42,
    }
    n = load_pipeline(write(tmp_path, doc)).notifications
    assert n == Notifications(
        ("ops@example.org", "ml@example.org"),
        "always",
        "smtp_ops",
        "https://hooks.example.org/edgeloop?team=ml",
        "edgeloop_webhook",
        42,
    )


def test_presets_are_airflows() -> None:
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    assert set(PRESETS) == set(CRON_PRESETS) | {"@once", "@continuous"}


def test_gcs_source(tmp_path: Path) -> None:
    step = s3_step(path="gs://my_gcs.bucket/raw", accessKey="GOOG1E", secretKeyEncrypted="tok")
    p = load_pipeline(write(tmp_path, [step]))
    src = p.steps[0].source
    assert (src.scheme, src.bucket, src.prefix, src.endpoint) == (
        "gs",
        "my_gcs.bucket",
        "raw/",
        None,
    )
    assert src.uri == "gs://my_gcs.bucket/raw/"
    step = s3_step(path="gs://bkt/", endpoint="http://127.0.0.1:9000", awsConnId="gcs_hmac")
    src = load_pipeline(write(tmp_path, [step])).steps[0].source
    assert (src.endpoint, src.conn_id, src.prefix) == ("http://127.0.0.1:9000", "gcs_hmac", "")


def test_actions_and_block_steps_parse_into_the_model(tmp_path: Path) -> None:
    p = load_pipeline(FIXTURES / "seed_example.json")
    kinds = [type(s) for s in p.steps]
    assert kinds == [ImportStep] + [ProjectActionStep] * 4
    assert [s.actions for s in p.steps[1:]] == [
        ("refreshDataExplorer",),
        ("retrainModel",),
        ("createVersion",),
        ("buildBinary",),
    ]
    assert p.steps[4].build_binary_model_type == "int8"
    block = {
        "name": "Combine",
        "transformationBlockId": "research-combiner",
        "filter": "dataset = 'AMS sorted'",
        "parameters": {"min-correlation": "0.5", "n": 3, "flag": True},
        "transformationParallel": 4,
        "extraCliArguments": "--x",
        "uploadType": "dataset",
        "outputDatasetName": "AMS Activity 2022",
        "outputDatasetPathRule": "subfolder-per-item",
    }
    step = load_pipeline(write(tmp_path, [block])).steps[0]
    assert isinstance(step, BlockStep)
    assert (step.block_id, step.parallel, step.upload_type) == ("research-combiner", 4, "dataset")
    assert step.parameters == (("min-correlation", "0.5"), ("n", "3"), ("flag", "true"))
    assert step.filter == "dataset = 'AMS sorted'" and step.output_dataset_name


# Every defect of issue 7: (document, parts of the error). Each failed before the fix.
DEFECTS = {
    "action without any action (was KeyError: 'path')": (
        [
            {
                "name": "x",
                "builtinTransformationBlock": {"type": "project-action", "retrainModel": False},
            }
        ],
        ["$[0].builtinTransformationBlock", "asks for no action"],
    ),
    "model type without buildBinary (was KeyError: 'path')": (
        [
            {
                "name": "x",
                "builtinTransformationBlock": {
                    "type": "project-action",
                    "buildBinaryModelType": "int8",
                },
            }
        ],
        ["$[0].builtinTransformationBlock.buildBinaryModelType", "goes with 'buildBinary'"],
    ),
    "step-level category on an import step (was loaded as split)": (
        {"name": "x", "steps": [{**s3_step(), "category": "testing"}]},
        ["$.steps[0].category", "builtinTransformationBlock.category"],
    ),
    "step-level filter on an import step": (
        {"name": "x", "steps": [{**s3_step(), "filter": "name = 'a'"}]},
        ["$.steps[0].filter", "transformation-block steps only"],
    ),
    "step-level label on an import step": (
        {"name": "x", "steps": [{**s3_step(), "label": "cat"}]},
        ["$.steps[0].label"],
    ),
    "outputDatasetName on an import step": (
        {"name": "x", "steps": [{**s3_step(), "outputDatasetName": "d"}]},
        ["$.steps[0].outputDatasetName"],
    ),
    "pipeline dataset (was ignored)": (
        {"name": "x", "dataset": "d", "steps": [s3_step()]},
        ["$.dataset", "not supported"],
    ),
    "pipeline projectId (was ignored)": (
        {"name": "x", "projectId": 12, "steps": [s3_step()]},
        ["$.projectId", "'project'"],
    ),
    "intervalStr overflow (was OverflowError)": (
        {"name": "x", "intervalStr": "99999999999d", "steps": [s3_step()]},
        ["$.intervalStr", "99999999999d"],
    ),
    "interval longer than a year": (
        {"name": "x", "intervalStr": "999999d", "steps": [s3_step()]},
        ["$.intervalStr", "interval too long"],
    ),
    "tag over Airflow's 100 characters": (
        {"name": "x", "tags": ["t" * 101], "steps": [s3_step()]},
        ["$.tags[0]", "at most 100"],
    ),
    "project too long for its tag": (
        {"name": "x", "project": "p" * 93, "steps": [s3_step()]},
        ["$.project"],
    ),
    "schedule @never": (
        {"name": "x", "schedule": "@never", "steps": [s3_step()]},
        ["$.schedule", "unknown schedule preset", "@never"],
    ),
    "schedule @": (
        {"name": "x", "schedule": "@", "steps": [s3_step()]},
        ["$.schedule", "unknown schedule preset"],
    ),
    "cron with six fields": (
        {"name": "x", "schedule": "* * * * * *", "steps": [s3_step()]},
        ["$.schedule", "5 fields"],
    ),
    "concurrency 4.0 (JSON Schema's integer)": (
        {"name": "x", "steps": [s3_step(concurrency=4.0)]},
        ["$.steps[0].builtinTransformationBlock.concurrency", "type integer", "4.0"],
    ),
    "retries true": (
        {"name": "x", "retries": True, "steps": [s3_step()]},
        ["$.retries", "type integer"],
    ),
    "id ..": (
        {"id": "..", "name": "x", "steps": [s3_step()]},
        ["$.id", "got '..'"],
    ),
    "schedule together with intervalStr": (
        {"name": "x", "schedule": "@daily", "intervalStr": "1d", "steps": [s3_step()]},
        ["$.schedule", "either 'schedule' or 'intervalStr'"],
    ),
    "credential in endpoint": (
        {"name": "x", "steps": [s3_step(endpoint="http://KEY:SECRET@host:9000")]},
        ["$.steps[0].builtinTransformationBlock.endpoint", "credentials do not belong"],
    ),
    "both step kinds at once": (
        {"name": "x", "steps": [{**s3_step(), "transformationBlockId": "b"}]},
        ["$.steps[0].transformationBlockId", "not both"],
    ),
    "neither step kind": (
        {"name": "x", "steps": [{"name": "s"}]},
        ["$.steps[0]", "needs 'builtinTransformationBlock' or 'transformationBlockId'"],
    ),
    "emailRecipientUids (the reference's user ids)": (
        {"name": "x", "emailRecipientUids": [12], "steps": [s3_step()]},
        ["$.emailRecipientUids", "list the addresses in 'emailRecipients'"],
    ),
    "whenToEmail unknown": (
        {"name": "x", "whenToEmail": "sometimes", "steps": [s3_step()]},
        ["$.whenToEmail", "one of ['always', 'on_new_data', 'never']", "'sometimes'"],
    ),
    "emailRecipients not an address": (
        {"name": "x", "emailRecipients": ["ops"], "steps": [s3_step()]},
        ["$.emailRecipients[0]", "a string matching"],
    ),
    "webhookConnId without notificationWebhook": (
        {"name": "x", "webhookConnId": "hook", "steps": [s3_step()]},
        ["$.webhookConnId", "goes with 'notificationWebhook'"],
    ),
    "credential in notificationWebhook": (
        {"name": "x", "notificationWebhook": "https://u:PW@hooks.example/x", "steps": [s3_step()]},
        ["$.notificationWebhook", "credentials do not belong", "***@hooks.example"],
    ),
}


@pytest.mark.parametrize("case", DEFECTS)
def test_defects_are_errors_with_file_and_path(tmp_path: Path, case: str) -> None:
    doc, parts = DEFECTS[case]
    path = write(tmp_path, doc)
    found = "\n".join(messages(path))
    assert found.startswith(f"{path}: "), found
    for part in parts:
        assert part in found, (part, found)


def test_credential_in_endpoint_is_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "x", "steps": [s3_step(endpoint="http://KEY:SECRET@host")]})
    found = "\n".join(messages(path))
    assert "SECRET" not in found and "KEY" not in found and "***@host" in found
    path = write(tmp_path, {"name": "x", "steps": [s3_step(path="s3://KEY:SECRET@bkt/")]})
    found = "\n".join(messages(path))
    assert "$.steps[0].builtinTransformationBlock.path" in found and "SECRET" not in found


def test_duplicate_keys_are_errors_with_their_path(tmp_path: Path) -> None:
    text = (
        '{"name": "x", "name": "y", "steps": [{"name": "s", "builtinTransformationBlock": '
        '{"type": "s3-to-project", "path": "s3://bkt/a/", "path": "s3://bkt/b/"}}]}'
    )
    found = "\n".join(messages(write(tmp_path, text)))
    assert "$.name: duplicate key 'name'" in found
    assert "$.steps[0].builtinTransformationBlock.path: duplicate key 'path'" in found


def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    assert messages(path) == [f"{path}: $: not a config: nested too deeply"]
    # deep but parseable nesting inside a field: a schema error, shown short
    doc = {"name": "x", "steps": [s3_step()], "tags": [[[[[[[["deep"]]]]]]]]}
    found = "\n".join(messages(write(tmp_path, doc)))
    assert "$.tags[0]" in found and len(found) < 1000


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
        ("[1,", ["p.json: not valid JSON"]),
        ("[NaN]", ["NaN is not a JSON number"]),
    ],
)
def test_schema_errors_name_file_path_expected_and_value(tmp_path: Path, doc, expected) -> None:
    found = "\n".join(messages(write(tmp_path, json.dumps(doc) if doc != "[1," else doc)))
    if doc in ("[1,", "[NaN]"):
        found = "\n".join(messages(write(tmp_path, doc)))
    for part in expected:
        assert part in found, (part, found)


def test_plaintext_secret_is_rejected_with_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "x", "steps": [s3_step(accessKey="AK", secretKey="hunter2")]})
    found = "\n".join(messages(path))
    assert "$.steps[0].builtinTransformationBlock.secretKey" in found
    assert "plaintext secrets are not accepted" in found
    assert "edgeloop encrypt-secret" in found and "awsConnId" in found
    assert "hunter2" not in found


def test_any_exception_while_loading_becomes_a_config_error(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, [s3_step()])

    def boom(*args, **kwargs):
        raise KeyError("path")

    monkeypatch.setattr("edgeloop.config.loader._step", boom)
    with pytest.raises(ConfigError, match=r"p\.json: cannot load this config \(KeyError"):
        load_pipeline(path)
    assert messages(tmp_path / "missing.json") == [f"{tmp_path / 'missing.json'}: no such file"]


def test_same_id_in_two_files_and_one_bad_config_hide_nothing(tmp_path: Path) -> None:
    write(tmp_path, [s3_step()], "good.json")
    write(tmp_path, {"name": "x", "steps": [s3_step(category="nope")]}, "bad.json")
    write(tmp_path, {"id": "good", "name": "dup", "steps": [s3_step()]}, "zz-dup.json")
    pipelines, errors = load_pipelines(tmp_path)
    assert [p.id for p in pipelines] == ["good"]
    assert sorted(Path(f).name for f in errors) == ["bad.json", "zz-dup.json"]
    dup = errors[str(tmp_path / "zz-dup.json")]
    assert "$.id" in str(dup[0]) and "already used by" in str(dup[0])


def test_every_shipped_pipeline_loads(repo_root: Path) -> None:
    for path in sorted((repo_root / "include" / "pipelines").glob("*.json")):
        assert load_pipeline(path).steps, path
