"""Project-action steps: the config rules (the seed's "Requires 'Retrain model'", the quality
gate, approval), the tasks the builder makes and their order, and the summary's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeloop.config import ProjectActionStep, errors_of, load_pipeline
from edgeloop.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "fixtures" / "pipelines" / "seed_example.json"
IMPORT = {
    "name": "import",
    "builtinTransformationBlock": {
        "type": "s3-to-project",
        "path": "s3://bkt/data/",
        "awsConnId": "c1",
    },
}


def action(name: str, **block) -> dict:
    return {"name": name, "builtinTransformationBlock": {"type": "project-action", **block}}


def write(tmp_path: Path, doc, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def messages(path: Path) -> list[str]:
    try:
        load_pipeline(path)
    except ConfigError as exc:
        return [str(e) for e in errors_of(exc)]
    return []


def test_seed_pipeline_loads_with_the_gate_default_and_no_approval() -> None:
    p = load_pipeline(SEED)
    steps = p.steps[1:]
    assert all(isinstance(s, ProjectActionStep) for s in steps)
    retrain, deploy = steps[1], steps[3]
    assert retrain.retrain_model and retrain.max_drop == 0.01
    assert deploy.build_binary == "zip" and deploy.model_type == "int8"
    assert not deploy.require_approval


def test_quality_gate_and_approval_fields_parse(tmp_path: Path) -> None:
    doc = [
        IMPORT,
        action("r", retrainModel=True, qualityGate={"maxDrop": 0.05}),
        action("d", buildBinary="zip", buildBinaryModelType="float32", requireApproval=True),
    ]
    p = load_pipeline(write(tmp_path, doc))
    assert p.steps[1].max_drop == 0.05
    assert p.steps[2].require_approval and p.steps[2].model_type == "float32"
    one = load_pipeline(write(tmp_path, [action("x", retrainModel=True, buildBinary="zip")]))
    assert one.steps[0].model_type == "int8"  # the default


@pytest.mark.parametrize(
    ("steps", "parts"),
    [
        (  # the seed without its retrain step
            [IMPORT, action("v", createVersion=True), action("d", buildBinary="zip")],
            ["$[2].builtinTransformationBlock.buildBinary", "Retrain model' to also be enabled"],
        ),
        (  # retrain after the deployment: the deployment would not be of this run's model
            [action("d", buildBinary="zip"), action("r", retrainModel=True)],
            ["$[0].builtinTransformationBlock.buildBinary", "Retrain model' to also be enabled"],
        ),
        (
            [action("r", retrainModel=False, buildBinary="zip")],
            ["$[0].builtinTransformationBlock.buildBinary", "Retrain model' to also be enabled"],
        ),
        (
            [action("v", createVersion=True, qualityGate={"maxDrop": 0.1})],
            ["$[0].builtinTransformationBlock.qualityGate", "goes with 'retrainModel'"],
        ),
        (
            [action("r", retrainModel=True, requireApproval=True)],
            ["$[0].builtinTransformationBlock.requireApproval", "goes with 'buildBinary'"],
        ),
        (
            [action("r", retrainModel=True, qualityGate={"maxDrop": 2})],
            ["$[0].builtinTransformationBlock.qualityGate.maxDrop", "a number <= 1"],
        ),
        (
            [action("r", retrainModel=True, qualityGate={"max_drop": 0.1})],
            ["$[0].builtinTransformationBlock.qualityGate", "max_drop"],
        ),
        (
            [action("r", retrainModel=True, buildBinary="zip", buildBinaryModelType="int4")],
            ["$[0].builtinTransformationBlock.buildBinaryModelType", "int8"],
        ),
    ],
)
def test_refused_action_configs_name_the_field(tmp_path: Path, steps: list, parts: list) -> None:
    found = messages(write(tmp_path, steps))
    assert any(all(p in m for p in parts) for m in found), found


# -- the builder -----------------------------------------------------------------------------


def _dag(tmp_path: Path, doc):
    from edgeloop.dag_factory import build_files

    path = write(tmp_path, doc, "acts.json")
    built = build_files([path])
    assert built.errors == {}, built.errors
    return built.dags["acts"]


def _upstream(dag, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def test_seed_order_is_the_config_order(tmp_path: Path) -> None:
    doc = json.loads(SEED.read_text())
    doc[0]["builtinTransformationBlock"] = IMPORT["builtinTransformationBlock"]
    dag = _dag(tmp_path, doc)
    explorer = "refresh_data_explorer.refresh_data_explorer"
    retrain = "retrain_model.retrain_model"
    version = "create_new_version.create_version"
    deploy = "create_on_device_deployment_c_library.build_binary"
    label = "fetch_data_from_s3_data_pipeline_data_pipeline_example_infer.label"
    assert _upstream(dag, explorer) == {label}
    assert _upstream(dag, retrain) == {explorer}
    assert _upstream(dag, version) == {retrain}
    assert _upstream(dag, deploy) == {version}
    assert _upstream(dag, "summary") == {deploy}
    t = dag.get_task(deploy)
    assert (t.retrain_task_id, t.model_type, t.require_approval) == (retrain, "int8", False)
    assert dag.get_task(version).deploy_task_ids == []  # the deployment comes after it
    assert dag.get_task(retrain).max_drop == 0.01
    # a skipped deployment (quality gate) still lets the later tasks and the summary run
    assert dag.get_task("summary").trigger_rule == "none_failed"
    assert dag.get_task(version).trigger_rule == "none_failed"
    assert dag.get_task("summary").action_task_ids == {
        "explorer": [explorer],
        "retrain": [retrain],
        "version": [version],
        "deploy": [deploy],
    }
    assert not [t for t in dag.tasks if "approve" in t.task_id]


def test_one_step_with_every_action_and_approval(tmp_path: Path) -> None:
    doc = {
        "id": "acts",
        "name": "all in one step",
        "project": "p",
        "steps": [
            action(
                "Everything",
                refreshDataExplorer=True,
                retrainModel=True,
                createVersion=True,
                buildBinary="zip",
                requireApproval=True,
                qualityGate={"maxDrop": 0.02},
            )
        ],
    }
    dag = _dag(tmp_path, doc)
    g = "everything."
    assert _upstream(dag, g + "retrain_model") == {g + "refresh_data_explorer"}
    assert _upstream(dag, g + "build_binary") == {g + "retrain_model"}
    assert _upstream(dag, g + "create_version") == {g + "build_binary"}
    assert _upstream(dag, g + "approve_deployment") == {g + "build_binary"}
    assert _upstream(dag, g + "publish_deployment") == {g + "approve_deployment"}
    assert _upstream(dag, "summary") == {g + "create_version", g + "publish_deployment"}
    approve = dag.get_task(g + "approve_deployment")
    assert type(approve).__name__ == "ApprovalOperator"
    assert approve.options == ["Approve", "Reject"] and not approve.fail_on_reject
    assert "build_binary" in approve.body
    assert dag.get_task(g + "create_version").deploy_task_ids == [g + "build_binary"]
    assert dag.get_task(g + "build_binary").require_approval
    assert dag.get_task(g + "retrain_model").max_drop == 0.02
    # the first task records the config's sha256 for the others to compare
    assert dag.get_task(g + "retrain_model").first_task_id == g + "refresh_data_explorer"


def test_a_deployment_in_a_later_step_uses_the_latest_retrain(tmp_path: Path) -> None:
    doc = [
        IMPORT,
        action("r1", retrainModel=True),
        action("r2", retrainModel=True, buildBinary="zip"),
        action("d", buildBinary="zip", buildBinaryModelType="float32"),
        action("v", createVersion=True),
    ]
    dag = _dag(tmp_path, doc)
    assert dag.get_task("r2.build_binary").retrain_task_id == "r2.retrain_model"
    assert dag.get_task("d.build_binary").retrain_task_id == "r2.retrain_model"
    assert dag.get_task("v.create_version").deploy_task_ids == [
        "r2.build_binary",
        "d.build_binary",
    ]


# -- the summary -------------------------------------------------------------------------------

GATE = {
    "passed": False,
    "reason": "test accuracy 0.5000 < current model 2's 0.9000 - maxDrop 0.01: not promoted",
    "max_drop": 0.01,
    "current_model": 2,
    "current_test_accuracy": 0.9,
    "new_test_accuracy": 0.5,
}
RETRAIN = {
    "model": 3,
    "promoted": False,
    "validation_accuracy": 0.55,
    "test_accuracy": 0.5,
    "gate": GATE,
}
DEPLOY = {
    "deployment": 4,
    "model": 3,
    "model_type": "int8",
    "zip": "/blobs/ab/cd",
    "zip_sha": "ab" * 32,
    "published": False,
    "require_approval": True,
    "accuracy": {"float": 0.9, "int8": 0.9},
    "verification": {
        "rule": "bit-exact",
        "reference": "tflite-micro",
        "samples": 60,
        "max_abs_diff": 0,
    },
}


def test_summary_says_why_the_deployment_was_skipped() -> None:
    from edgeloop.summary import action_summary

    out = action_summary({"retrain": [RETRAIN], "deploy": [None], "version": [{"version": 5}]})
    assert out["training"] == {
        "model": 3,
        "validation_accuracy": 0.55,
        "test_accuracy": 0.5,
        "promoted": False,
    }
    gate = out["quality_gate"]
    assert gate["passed"] is False and "not promoted" in gate["reason"]
    assert out["deployment"] == {
        "skipped": f"model 3 did not pass the quality gate: {GATE['reason']}"
    }
    assert out["version"] == 5
    assert action_summary({}) == {}


@pytest.mark.parametrize(
    ("publish", "published", "approval"),
    [([{"deployment": 4, "published": True}], True, "approved"), ([None], False, "rejected")],
)
def test_summary_of_an_approved_or_rejected_deployment(publish, published, approval) -> None:
    from edgeloop.summary import _action_lines, action_summary

    passed = {**RETRAIN, "promoted": True, "gate": {**GATE, "passed": True}}
    out = action_summary(
        {
            "retrain": [passed],
            "deploy": [DEPLOY],
            "approval": [None],
            "publish": publish,
            "explorer": [{"map": 2, "png": "/x.png", "png_sha": "s", "points": 9, "new": 3}],
        }
    )
    dep = out["deployment"]
    assert (dep["number"], dep["published"]) == (4, published)
    assert dep["approval"].startswith(approval)
    assert dep["verification"] == "bit-exact against tflite-micro on 60 samples (max |diff| 0)"
    assert out["explorer"]["png"] == "/x.png"
    lines = "\n".join(_action_lines(out))
    assert "deployment 4 (int8, model 3): /blobs/ab/cd" in lines
    assert f"deployment 4: {approval}" in lines
    assert "explorer map 2: 9 points, 3 new" in lines
    assert "model 3: validation accuracy 0.5500, test accuracy 0.5000" in lines


def test_a_task_runs_record_is_found_in_its_project_and_refused_in_another(edgeloop_home) -> None:
    """A retried task finds what it made; if the pipeline's project changed mid-run, it is
    told so instead of reusing a record of another project."""
    from datetime import UTC, datetime

    from edgeloop.catalog.store import Catalog
    from edgeloop.catalog.tables import versions
    from edgeloop.errors import TrainingError
    from edgeloop.training.registry import RunKey, find_run_record

    catalog = Catalog.from_settings()
    run = RunKey("pipe", "manual__1", "actions.version")
    with catalog.begin() as conn:
        a, _ = catalog.dataset_id(conn, "proj-a"), catalog.dataset_id(conn, "proj-b")
        conn.execute(
            versions.insert().values(
                dataset_id=a, number=1, manifest_sha="0" * 64, summary="{}",
                created_at=datetime.now(UTC), **run.values(),
            )
        )  # fmt: skip
    assert find_run_record(catalog, versions, "proj-a", run, made="created version").number == 1
    other = RunKey("pipe", "manual__2", "actions.version")
    assert find_run_record(catalog, versions, "proj-a", other, made="created version") is None
    with pytest.raises(TrainingError, match="created version 1 in another project than 'proj-b'"):
        find_run_record(catalog, versions, "proj-b", run, made="created version")
