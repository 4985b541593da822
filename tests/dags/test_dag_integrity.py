"""Every shipped pipeline becomes a sound DAG; broken configs become invalid-config DAGs and
hide nothing; `edgeloop validate` reports exactly what the builder refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeloop.dag_factory import build_dags, build_files, check_files, group_ids, slug

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "pandas", "great_expectations", "boto3", "botocore", "keras")
STEP = {"name": "s", "builtinTransformationBlock": {"type": "s3-to-project", "path": "s3://bkt/x/"}}


def _dagbag(pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("EDGELOOP_PIPELINES_DIR", str(pipelines_dir))
    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_config_becomes_a_sound_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _dagbag(REPO / "include" / "pipelines", monkeypatch)
    assert bag.import_errors == {}
    configs = sorted(p.stem for p in (REPO / "include" / "pipelines").glob("*.json"))
    assert configs and sorted(bag.dag_ids) == configs
    for dag in bag.dags.values():
        assert "edgeloop" in dag.tags
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert dag.doc_md
        for task in dag.tasks:
            assert task.owner == "edgeloop"
            assert task.doc_md, task.task_id
        group = next(iter(dag.task_group.children))
        param = dag.params.get_param("ignoreLastSuccessfulRun")
        assert param.value is False and param.schema["type"] == "boolean" and param.description
        if f"{group}.run" in dag.task_dict:  # a pipeline of transformation-block steps
            assert [t for t in dag.task_dict if t.startswith(f"{group}.")] == [f"{group}.run"]
            assert dag.task_dict[f"{group}.run"].max_active_tis_per_dagrun >= 1
            assert dag.task_dict["publish"].upstream_task_ids == {"summary"}
            continue
        assert list(dag.task_dict)[:3] == [
            f"{group}.{t}" for t in ("verify_source", "sync", "label")
        ]
        # summary follows the last step's leaves (an import step's label; the version or
        # the deployment of a project-action step)
        last = [g for g in dag.task_group.children if g not in ("summary", "publish", "notify")][-1]
        mine = [t for t in dag.tasks if t.task_id.startswith(f"{last}.")]
        leaves = {t.task_id for t in mine if not t.downstream_task_ids & {m.task_id for m in mine}}
        assert dag.task_dict["summary"].upstream_task_ids == leaves
        assert dag.task_dict["publish"].upstream_task_ids == {"summary"}
        sync = dag.task_dict[f"{group}.sync"]
        assert sync.retries >= 1 and sync.retry_exponential_backoff
        assert dag.task_dict[f"{group}.verify_source"].retries == 0  # fail fast
        param = dag.params.get_param("ignoreLastSuccessfulRun")
        assert param.value is False and param.schema["type"] == "boolean" and param.description


def test_demo_dag_shows_name_readable_schedule_and_project_asset() -> None:
    dag = build_dags(REPO / "include" / "pipelines")["demo"]
    assert dag.dag_display_name == "Import digits from s3://edgeloop-demo/digits/"
    from airflow.serialization.encoders import coerce_to_core_timetable

    timetable = coerce_to_core_timetable(dag.timetable)  # what the UI shows
    assert (timetable.summary, timetable.description) == ("0 0 * * *", "At 00:00")
    group = "fetch_data_from_s3_edgeloop_demo_digits"
    summary = dag.task_dict["summary"]
    assert summary.sync_task_ids == [f"{group}.sync"]
    assert summary.label_task_ids == [f"{group}.label"]
    (asset,) = dag.task_dict["publish"].outlets
    assert (asset.name, asset.uri) == ("edgeloop-project-demo", "x-edgeloop://project/demo")
    sync = dag.task_dict[f"{group}.sync"]
    assert (sync.bucket, sync.prefix, sync.project, sync.conn_id) == (
        "edgeloop-demo",
        "digits/",
        "demo",
        "edgeloop_demo_s3",
    )
    assert sync.first_task_id == f"{group}.verify_source" and len(sync.config_sha256) == 64


def test_the_serialized_dag_holds_the_config(tmp_path: Path) -> None:
    """Airflow versions a DAG by its serialized form: a config edit must change it."""
    from airflow.serialization.serialized_objects import DagSerialization

    def serialized(prefix: str) -> str:
        step = {**STEP, "builtinTransformationBlock": {**STEP["builtinTransformationBlock"]}}
        step["builtinTransformationBlock"]["path"] = f"s3://bkt/{prefix}/"
        (tmp_path / "p.json").write_text(json.dumps([step]))
        return json.dumps(DagSerialization.to_dict(build_dags(tmp_path)["p"]), sort_keys=True)

    first, second = serialized("a"), serialized("b")
    assert first != second and '"a/"' in first and '"b/"' in second


def test_group_ids_are_unique_slugs() -> None:
    class S:
        def __init__(self, name: str) -> None:
            self.name = name

    names = ["Fetch data", "fetch DATA!", "Données", "***", "summary"]
    assert group_ids(S(n) for n in names) == [
        "fetch_data",
        "fetch_data_2",
        "donnees",
        "step_4",
        "summary_step",
    ]
    assert slug("x" * 100) == "x" * 60


def test_bad_config_shows_its_error_and_hides_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "good.json").write_text(json.dumps([STEP]))
    block = {**STEP["builtinTransformationBlock"], "category": "sometimes"}
    (tmp_path / "broken.json").write_text(
        json.dumps({"name": "b", "steps": [{**STEP, "builtinTransformationBlock": block}]})
    )
    bag = _dagbag(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["broken", "good"]
    broken = bag.dags["broken"]
    assert "invalid-config" in broken.tags
    assert broken.description.startswith("INVALID CONFIG:")
    assert broken.dag_display_name == "broken (INVALID CONFIG: see Docs)"
    assert "$.steps[0].builtinTransformationBlock.category" in broken.doc_md
    assert "sometimes" in broken.doc_md
    assert type(broken.timetable).__name__ == "NullTimetable"


# Files that once made every DAG disappear (an exception escaping the DAG file) or
# that validate passed while the builder dropped them.
KILLERS = {
    "action.json": [
        {
            "name": "x",
            "builtinTransformationBlock": {"type": "project-action", "retrainModel": False},
        }
    ],
    "model_type.json": [
        {
            "name": "x",
            "builtinTransformationBlock": {
                "type": "project-action",
                "buildBinaryModelType": "int8",
            },
        }
    ],
    "overflow.json": {"name": "x", "intervalStr": "99999999999d", "steps": [STEP]},
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "tag.json": {"name": "x", "tags": ["t" * 101], "steps": [STEP]},
    "never.json": {"name": "x", "schedule": "@never", "steps": [STEP]},
    "at.json": {"name": "x", "schedule": "@", "steps": [STEP]},
    "float.json": {
        "name": "x",
        "steps": [
            {
                **STEP,
                "builtinTransformationBlock": {
                    **STEP["builtinTransformationBlock"],
                    "concurrency": 4.0,
                },
            }
        ],
    },
    "dupkey.json": '{"name": "x", "name": "y", "steps": []}',
    "dotdot.json": {"id": "..", "name": "x", "steps": [STEP]},
    "both.json": {"name": "x", "schedule": "@daily", "intervalStr": "1d", "steps": [STEP]},
    "sameid.json": {"id": "good", "name": "x", "steps": [STEP]},
    "seed_without_retrain.json": [  # buildBinary "requires 'Retrain model'"
        s
        for s in json.loads((REPO / "tests/fixtures/pipelines/seed_example.json").read_text())
        if s["name"] != "Retrain model"
    ],
    "binary.json": "\xff\xfe garbage",
    "block.json": [{"name": "b", "transformationBlockId": "research-combiner"}],
}


def test_no_file_hides_the_others_and_validate_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "good.json").write_text(json.dumps([STEP]))
    for name, doc in KILLERS.items():
        (tmp_path / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    bag = _dagbag(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    invalid = {d for d in bag.dag_ids if "invalid-config" in bag.dags[d].tags}
    assert "good" in bag.dag_ids and "good" not in invalid
    assert len(invalid) == len(KILLERS)
    files = sorted(tmp_path.glob("*.json"))
    errors = check_files(files)
    assert sorted(Path(f).name for f in errors) == sorted(KILLERS)
    # one file alone is checked against its folder: the id used twice is still reported
    assert list(check_files([tmp_path / "sameid.json"])) == [str(tmp_path / "sameid.json")]
    assert check_files([tmp_path / "good.json"]) == {}


def test_an_exception_inside_the_builder_becomes_an_invalid_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.json").write_text(json.dumps([STEP]))

    def boom(*args, **kwargs):
        raise RuntimeError("surprise")

    monkeypatch.setattr("edgeloop.dag_factory._build_import", boom)
    from edgeloop import dag_factory

    monkeypatch.setitem(
        dag_factory.STEP_BUILDERS,
        dag_factory.ImportStep,
        dag_factory.StepBuilder(check=dag_factory._no_errors, build=boom),
    )
    built = build_files([tmp_path / "a.json"])
    assert "surprise" in str(built.errors[str(tmp_path / "a.json")][0])
    assert "invalid-config" in built.dags["a"].tags


def test_parsing_imports_no_heavy_library_and_does_no_network_io() -> None:
    code = (
        "import socket, sys, runpy\n"
        "def no_net(*a, **k): raise RuntimeError('network I/O at parse time')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        f"runpy.run_path({str(REPO / 'dags' / 'edgeloop_pipelines.py')!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "EDGELOOP_PIPELINES_DIR": str(REPO / "include" / "pipelines")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
