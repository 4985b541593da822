"""The operators carry resolved arguments; their template_fields render; the source is
built from the rendered values, lazily."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeloop.dag_factory import build_dags
from edgeloop.operators.ingest import LabelOperator, S3SyncOperator, VerifySourceOperator


def _dag(tmp_path: Path, block: dict):
    step = {"name": "Import", "builtinTransformationBlock": {"type": "s3-to-project", **block}}
    (tmp_path / "p.json").write_text(json.dumps({"name": "P", "project": "proj", "steps": [step]}))
    return build_dags(tmp_path)["p"]


def test_tasks_hold_the_config_resolved(tmp_path: Path) -> None:
    dag = _dag(
        tmp_path,
        {
            "path": "gs://my-gcs/raw",
            "accessKey": "GOOG1E",
            "secretKeyEncrypted": "token",
            "region": "auto",
            "fileTypes": [".PNG"],
            "concurrency": 4,
            "syncDeletions": True,
            "labelStrategy": "infer-from-file-name",
            "category": "testing",
        },
    )
    sync = dag.task_dict["import.sync"]
    assert isinstance(sync, S3SyncOperator)
    spec = sync.spec()
    assert (spec.scheme, spec.bucket, spec.prefix, spec.access_key) == (
        "gs",
        "my-gcs",
        "raw/",
        "GOOG1E",
    )
    assert (spec.file_types, spec.concurrency, spec.region, sync.sync_deletions) == (
        (".png",),
        4,
        "auto",
        True,
    )
    label = dag.task_dict["import.label"]
    assert isinstance(label, LabelOperator)
    assert (label.source_uri, label.strategy, label.category) == (
        "gs://my-gcs/raw/",
        "infer-from-file-name",
        "testing",
    )
    assert isinstance(dag.task_dict["import.verify_source"], VerifySourceOperator)
    assert "source" not in vars(sync)  # the hook is created on first use, not at parse time


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (VerifySourceOperator, {"bucket", "prefix", "project", "conn_id", "endpoint", "region"}),
        (S3SyncOperator, {"bucket", "prefix", "project", "conn_id", "endpoint", "region"}),
        (LabelOperator, {"bucket", "prefix", "project"}),
    ],
)
def test_template_fields(cls, fields) -> None:
    assert set(cls.template_fields) == fields
    assert "secret_key_encrypted" not in cls.template_fields


def test_rendered_fields_feed_the_source(tmp_path: Path) -> None:
    from airflow.sdk import DAG

    with DAG("t", schedule=None):
        sync = S3SyncOperator(
            task_id="sync",
            pipeline_id="t",
            config_file="t.json",
            bucket="bkt-{{ params.env }}",
            prefix="in/{{ ds }}",
            project="proj_{{ params.env }}",
            conn_id="conn_{{ params.env }}",
            endpoint="http://{{ params.env }}.example:9000",
        )
    sync.render_template_fields({"ds": "2024-05-01", "params": {"env": "dev"}})
    spec = sync.spec()
    assert (spec.bucket, spec.prefix, sync.project, spec.conn_id, spec.endpoint) == (
        "bkt-dev",
        "in/2024-05-01/",  # a rendered prefix still ends with '/'
        "proj_dev",
        "conn_dev",
        "http://dev.example:9000",
    )
    assert sync.source.spec == spec and sync.source.file == "t.json"


class _TI:
    """Just the XCom calls of a task instance."""

    def __init__(self) -> None:
        self.xcom: dict[tuple[str, str], str] = {}
        self.task_id = ""

    def xcom_push(self, key: str, value: str) -> None:
        self.xcom[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str) -> str | None:
        return self.xcom.get((task_ids, key))


def test_a_run_never_mixes_two_configs(tmp_path: Path) -> None:
    from edgeloop.errors import ConfigError

    dag = _dag(tmp_path, {"path": "s3://bkt/a/"})
    first, sync = dag.task_dict["import.verify_source"], dag.task_dict["import.sync"]
    ti = _TI()
    ti.task_id = first.task_id
    first.check_config({"ti": ti})  # the run starts: records the config it runs
    ti.task_id = sync.task_id
    sync.check_config({"ti": ti})  # same config: fine
    edited = _dag(tmp_path, {"path": "s3://bkt/b/"}).task_dict["import.sync"]
    with pytest.raises(ConfigError, match="changed while this run was going on"):
        edited.check_config({"ti": ti})
