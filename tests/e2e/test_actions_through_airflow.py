"""The seed's project actions through Airflow (`airflow dags test`) on an image project:
a never-trained project fails the retrain with the seed's message; after `edgeloop train`,
the seed's five-step pipeline explores, retrains (quality gate passed: the same data gives
the same accuracy), versions and builds a verified int8 zip; the version restores byte for
byte; new data plus a training set polluted with mislabeled items retrains to a model that
is stored but not promoted, and no zip is built. Then a time-series project (the `activity`
impulse on combined Parquet files) through one step with all four actions.

The image tests run in file order on one project (each states what it adds).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop_dev.devenv import digit_objects

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "fixtures" / "pipelines" / "seed_example.json"
PREFIX = "digits/"
CONN_ID = "e2e_actions_s3"
PROJECT = "acts"
OBJECTS = digit_objects(per_label=14, unlabeled=6)
MORE = digit_objects(per_label=2, unlabeled=2, start=14)
EXPLORER = "refresh_data_explorer.refresh_data_explorer"
RETRAIN = "retrain_model.retrain_model"
VERSION = "create_new_version.create_version"
DEPLOY = "create_on_device_deployment_c_library.build_binary"


def _import_step(bucket: str) -> dict:
    return {
        "name": f"Fetch data from s3://{bucket}/{PREFIX}",
        "builtinTransformationBlock": {
            "type": "s3-to-project",
            "path": f"s3://{bucket}/{PREFIX}",
            "awsConnId": CONN_ID,
            "category": "split",
            "labelStrategy": "infer-from-folder-name",
        },
    }


def _seed_config(bucket: str) -> dict:
    """The seed's five steps verbatim, the import pointed at the test's bucket."""
    steps = json.loads(SEED.read_text())
    steps[0] = _import_step(bucket)
    return {"id": "acts", "name": "seed actions", "project": PROJECT, "steps": steps}


@pytest.fixture(scope="module")
def env(airflow_env, s3_server):
    client = s3_server.client()
    bucket = "e2e-actions"
    client.create_bucket(Bucket=bucket)
    for key, body in OBJECTS.items():
        client.put_object(Bucket=bucket, Key=PREFIX + key, Body=body)
    airflow_env.add_s3_connection(CONN_ID, s3_server.endpoint)
    retrain_only = {
        "id": "acts-untrained",
        "name": "retrain before any training",
        "project": PROJECT,
        "steps": [
            _import_step(bucket),
            {
                "name": "Retrain model",
                "builtinTransformationBlock": {"type": "project-action", "retrainModel": True},
            },
        ],
    }
    airflow_env.add_pipeline("acts-untrained.json", retrain_only)
    airflow_env.add_pipeline("acts.json", _seed_config(bucket))
    airflow_env.client, airflow_env.bucket = client, bucket
    return airflow_env


def _states(env, dag_id: str) -> dict[str, str]:
    runs = env.airflow_json("dags", "list-runs", dag_id)
    run_id = max(runs, key=lambda r: r["logical_date"] or r["run_after"])["run_id"]
    rows = env.airflow_json("tasks", "states-for-dag-run", dag_id, run_id)
    return {r["task_id"]: r["state"] for r in rows}


def _catalog(env):
    from edgeloop.catalog.store import Catalog

    return Catalog(f"sqlite:///{env.edgeloop_home / 'catalog.db'}")


def _assert_first_int8_deployment_of_model_2(dep: dict) -> None:
    """Deployment 1: model 2 as int8, published, verified bit-exact against tflite-micro."""
    assert (dep["number"], dep["model"], dep["model_type"], dep["published"]) == (
        1,
        2,
        "int8",
        True,
    )
    assert dep["verification"].startswith("bit-exact against tflite-micro")
    assert dep["verification"].endswith("(max |diff| 0)")


def test_retrain_of_a_never_trained_project_fails_with_the_seeds_message(env) -> None:
    env.airflow("dags", "test", "acts-untrained", check=False)
    states = _states(env, "acts-untrained")
    assert states[RETRAIN] == "failed" and states["summary"] == "upstream_failed"
    log = env.log.read_text()
    assert "You will need to have trained your project at least once" in log
    assert f"edgeloop train {PROJECT} --impulse include/impulses/" in log
    assert len(json.loads(env.edgeloop("items", PROJECT, "--json"))) == len(OBJECTS)


def test_seed_pipeline_explores_retrains_versions_and_builds_a_verified_zip(
    env, tmp_path: Path
) -> None:
    impulse = json.loads((REPO / "include" / "impulses" / "digits.json").read_text())
    impulse["learning"]["epochs"] = 20
    (tmp_path / "digits.json").write_text(json.dumps(impulse))
    first = json.loads(
        env.edgeloop("train", PROJECT, "--impulse", str(tmp_path / "digits.json"), "--json")
    )
    assert first["model"] == 1

    env.airflow("dags", "test", "acts")
    states = _states(env, "acts")
    for task in (EXPLORER, RETRAIN, VERSION, DEPLOY, "summary"):
        assert states[task] == "success", (task, states)
    summary = json.loads(env.edgeloop("summary", "acts", "--json"))
    assert summary["sync"]["new"] == 0
    training = summary["training"]
    assert training["model"] == 2 and training["promoted"]
    assert training["test_accuracy"] > 0.5 and training["validation_accuracy"] > 0.5
    gate = summary["quality_gate"]
    assert gate["passed"] and gate["current_model"] == 1 and gate["max_drop"] == 0.01
    assert gate["new_test_accuracy"] == training["test_accuracy"]
    # the same data: training is deterministic, the gate compares equal accuracies
    assert gate["new_test_accuracy"] == gate["current_test_accuracy"]
    explorer = summary["explorer"]  # before the retrain: model 1's embeddings
    assert explorer["points"] == len(OBJECTS)
    assert Path(explorer["png"]).read_bytes().startswith(b"\x89PNG")
    assert summary["version"] == 1
    dep = summary["deployment"]
    _assert_first_int8_deployment_of_model_2(dep)
    with zipfile.ZipFile(dep["zip"]) as zf:
        assert any(n.endswith("model_metadata.h") for n in zf.namelist())
    deployments = json.loads(env.edgeloop("deployments", PROJECT, "--json"))
    assert [(d["number"], d["current"]) for d in deployments] == [(1, True)]
    models = json.loads(env.edgeloop("models", PROJECT, "--json"))
    assert [(m["number"], m["current"]) for m in models] == [(1, False), (2, True)]
    versions = json.loads(env.edgeloop("versions", PROJECT, "--json"))
    assert len(versions) == 1 and versions[0]["run_id"] == summary["run_id"]


def test_version_restore_reproduces_every_file_byte_for_byte(env, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    env.edgeloop("version", "restore", PROJECT, "1", "--to", str(out))
    items = {r["name"]: r for r in json.loads(env.edgeloop("items", PROJECT, "--json"))}
    objects = OBJECTS
    assert sorted(items) == sorted(objects)
    for name, data in objects.items():
        item = items[name]
        folder = f"{item['category']}/{item['label']}" if item["label"] else "unlabeled"
        assert (out / folder / Path(name).name).read_bytes() == data, name
    restored = [p for p in out.rglob("*.png") if "artifacts" not in p.relative_to(out).parts]
    assert len(restored) == len(objects)
    sums = (out / "SHA256SUMS").read_text().splitlines()
    for line in sums:
        sha, rel = line.split("  ", 1)
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha, rel
    assert {"model.keras", "impulse.json", "pipeline.json", "explorer.png"} <= {
        p.name for p in (out / "artifacts").iterdir()
    }
    assert json.loads((out / "artifacts" / "pipeline.json").read_text())["id"] == "acts"


def test_polluted_dataset_is_not_promoted_and_builds_no_zip(env) -> None:
    from edgeloop.catalog.tables import items

    catalog = _catalog(env)
    rows = [r for r in catalog.list_items(PROJECT) if r["category"] == "training" and r["label"]]
    rng = np.random.default_rng(7)
    with catalog.begin() as conn:
        for i in rng.permutation(len(rows))[: int(len(rows) * 0.7)]:
            r = rows[int(i)]
            wrong = str((int(r["label"]) + 1 + int(i) % 9) % 10)
            conn.execute(items.update().where(items.c.id == r["id"]).values(label=wrong))
    for key, body in MORE.items():  # and new data in the bucket
        env.client.put_object(Bucket=env.bucket, Key=PREFIX + key, Body=body)

    env.airflow("dags", "test", "acts")
    states = _states(env, "acts")
    assert states[RETRAIN] == "success" and states[DEPLOY] == "skipped", states
    assert states[VERSION] == "success" and states["summary"] == "success", states
    summary = json.loads(env.edgeloop("summary", "acts", "--json"))
    assert summary["sync"]["new"] == len(MORE)
    assert summary["explorer"]["points"] == len(OBJECTS) + len(MORE)
    assert summary["training"]["model"] == 3 and not summary["training"]["promoted"]
    gate = summary["quality_gate"]
    assert not gate["passed"] and "not promoted" in gate["reason"]
    assert summary["deployment"]["skipped"].startswith("model 3 did not pass the quality gate")
    models = json.loads(env.edgeloop("models", PROJECT, "--json"))
    assert [(m["number"], m["current"]) for m in models] == [(1, False), (2, True), (3, False)]
    deployments = json.loads(env.edgeloop("deployments", PROJECT, "--json"))
    assert [(d["number"], d["current"]) for d in deployments] == [(1, True)]
    assert summary["version"] == 2  # the version still records the run (model 2 current)


# -- a time-series project ----------------------------------------------------------------
# Items shaped like the health study's combined Parquet files (research-combined/1), a first
# training with the `activity` impulse (2 s windows, spectral features, dense classifier,
# K-means anomaly), then one project-action step with all four actions: explorer → retrain
# (promoted: the same data gives the same accuracy) → int8 library (verified bit-exact) →
# version (its manifest holds the items, the config, the impulse, the model, the map and
# this run's deployment). Small on purpose (3 + 1 files of 40 s, 30 cheap epochs) and in
# this module to share its Airflow home: the time goes to Airflow.

TS_PROJECT = "activity-e2e"
TS_PIPELINE = "activity-loop"
TS_GROUP = "close_the_loop"
TS_SECONDS = 10  # per activity: 40 s per file, 2 s windows every 1 s -> 36 clean windows


def _activity_objects() -> dict[str, bytes]:
    from edgeloop.training.samples import activity_parquet

    objects = {
        f"training/study/S{i:02d}.parquet": activity_parquet(i, TS_SECONDS) for i in range(3)
    }
    return objects | {"testing/study/S10.parquet": activity_parquet(10, TS_SECONDS)}


TS_CONFIG = {
    "id": TS_PIPELINE,
    "name": "activity: explore, retrain, build, version",
    "project": TS_PROJECT,
    "schedule": None,
    "steps": [
        {
            "name": "Close the loop",
            "builtinTransformationBlock": {
                "type": "project-action",
                "refreshDataExplorer": True,
                "retrainModel": True,
                "buildBinary": "zip",
                "buildBinaryModelType": "int8",
                "createVersion": True,
            },
        }
    ],
}


@dataclass
class Activity:
    env: Any  # the module's AirflowEnv
    catalog: Any
    blobs: Any
    first: dict[str, Any]  # the first training's result


@pytest.fixture(scope="module")
def activity(airflow_env) -> Activity:
    """The project's items and its first model (trained here, in this process)."""
    from edgeloop.catalog.store import Catalog
    from edgeloop.storage.blobs import BlobStore
    from edgeloop.training.samples import add_objects
    from edgeloop.training.train import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGELOOP_HOME", str(airflow_env.edgeloop_home))
        catalog, blobs = Catalog.from_settings(), BlobStore.from_settings()
        add_objects(TS_PROJECT, _activity_objects(), catalog=catalog, blobs=blobs)
        impulse = json.loads((REPO / "include" / "impulses" / "activity.json").read_text())
        impulse["learning"] |= {"epochs": 30, "batchSize": 16}
        first = train(TS_PROJECT, impulse, catalog=catalog, blobs=blobs)
    assert first["model"] == 1 and first["metrics"]["rows"]["testing"] == 36
    airflow_env.add_pipeline(f"{TS_PIPELINE}.json", TS_CONFIG)
    return Activity(airflow_env, catalog, blobs, first)


def _task_states(env, run_id: str) -> dict[str, str]:
    """The run's task states, read from Airflow's metadata database (an `airflow tasks
    states-for-dag-run` costs a CLI start, ~10 s on 2 busy cores)."""
    import sqlite3

    db = sqlite3.connect(f"file:{env.home / 'airflow.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (TS_PIPELINE, run_id),
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


def test_time_series_project_explores_retrains_builds_and_versions(activity: Activity) -> None:
    from edgeloop.training import registry
    from edgeloop.training.explorer import explorer_points_of
    from edgeloop.training.versions import show_version

    activity.env.airflow("dags", "test", TS_PIPELINE)
    summary = activity.catalog.last_run(TS_PIPELINE)  # what `edgeloop summary` shows
    run_id = summary["run_id"]
    states = _task_states(activity.env, run_id)
    for task in ("refresh_data_explorer", "retrain_model", "build_binary", "create_version"):
        assert states[f"{TS_GROUP}.{task}"] == "success", (task, states)
    assert states["summary"] == "success", states

    # the promoted model: retrained on the same windows, deterministic, so the gate passes
    first = activity.first["metrics"]
    training, gate = summary["training"], summary["quality_gate"]
    assert training["model"] == 2 and training["promoted"]
    assert training["test_accuracy"] == first["test_accuracy"] > 0.8
    assert gate["passed"] and gate["current_model"] == 1
    models = registry.list_models(activity.catalog, TS_PROJECT)
    assert [(m["number"], m["kind"], m["current"]) for m in models] == [
        (1, "train", False),
        (2, "retrain", True),
    ]
    model = models[1]
    assert (model["pipeline_id"], model["run_id"]) == (TS_PIPELINE, run_id)
    assert model["impulse"]["input"]["type"] == "time-series" and model["anomaly_sha"]
    assert model["labels"] == ["biking", "running", "sitting", "walking"]
    assert model["metrics"]["rows"]["testing"] == 36

    # the explorer map: before the retrain, so model 1's embeddings, one point per window
    explorer = summary["explorer"]
    assert explorer["map"] == 1 and explorer["points"] == 4 * 36 and explorer["new"] == 0
    assert Path(explorer["png"]).read_bytes().startswith(b"\x89PNG")
    points = explorer_points_of(TS_PROJECT, catalog=activity.catalog)
    assert len(points) == 4 * 36 and len({p["item"] for p in points}) == 4
    assert {p["label"] for p in points} == set(model["labels"])

    # the deployment: an int8 library of model 2 on its 36 features, verified bit-exact
    dep = summary["deployment"]
    _assert_first_int8_deployment_of_model_2(dep)
    assert dep["accuracy"]["int8"] > 0.8
    with zipfile.ZipFile(dep["zip"]) as zf:
        meta = zf.read("model-parameters/model_metadata.h").decode()
        assert "tflite-model/trained_model_compiled.cpp" in zf.namelist()
    assert "#define EI_CLASSIFIER_LABEL_COUNT 4" in meta
    assert "#define EI_CLASSIFIER_NN_INPUT_FRAME_SIZE 36" in meta  # 3 axes x (8 bins + 4)
    assert [
        (d["number"], d["current"]) for d in registry.list_deployments(activity.catalog, TS_PROJECT)
    ] == [(1, True)]

    # the version: built last in the step, so it holds this run's deployment
    assert summary["version"] == 1
    manifest = show_version(TS_PROJECT, 1, catalog=activity.catalog, blobs=activity.blobs)[
        "manifest"
    ]
    assert manifest["run_id"] == run_id and manifest["config"]["id"] == TS_PIPELINE
    assert sorted(i["name"] for i in manifest["items"]) == sorted(_activity_objects())
    # one item label ("study", the folder); the windows' labels come from the label column
    assert manifest["counts"] == {
        "items": 4,
        "training": 3,
        "testing": 1,
        "unlabeled": 0,
        "labels": 1,
    }
    assert manifest["model"]["number"] == 2 and manifest["model"]["promoted"]
    assert manifest["model"]["impulse"]["input"]["windowSizeMs"] == 2000
    assert {"model.keras", "features.npz", "anomaly.npz"} <= set(manifest["model"]["artifacts"])
    assert manifest["explorer"] == {"map": 1, "artifacts": {"explorer.png": explorer["png_sha"]}}
    (deployment,) = manifest["deployments"]
    assert deployment["number"] == 1 and deployment["model"] == 2
    assert deployment["artifacts"]["deployment-1-int8.zip"] == dep["zip_sha"]
