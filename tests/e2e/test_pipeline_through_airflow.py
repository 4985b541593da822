"""A pipeline runs through Airflow (`airflow dags test`) against a real S3 server
process; the catalog, labels, categories and blobs are checked exactly, then
objects are added, changed and deleted and the pipeline re-runs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edgeloop_dev.devenv import digit_objects

pytestmark = pytest.mark.slow

PREFIX = "data/"
CONN_ID = "e2e_s3"


def _images() -> list[bytes]:
    """25 distinct PNGs (real digits)."""
    images = list(digit_objects(per_label=2, unlabeled=5).values())
    assert len({hashlib.sha256(b).hexdigest() for b in images}) == len(images)
    return images


IMAGES = _images()

# key (relative to PREFIX) -> content; the layout of the seed plus the corner cases.
FIRST = {
    "cat/cat.1.png": IMAGES[0],
    "cat/cat.2.png": IMAGES[1],
    "cat/a b ü.3.png": IMAGES[2],  # spaces, unicode, several dots
    "cat/cat.dup.png": IMAGES[0],  # same content as cat/cat.1.png: a duplicate
    "dog/dog.1.png": IMAGES[3],
    "dog/dog.2.png": IMAGES[4],
    "training/bird/bird.1.png": IMAGES[5],  # category fixed by the folder
    "testing/bird/bird.2.png": IMAGES[6],
    "training/unlabeled/y.png": IMAGES[7],
    "unlabeled/x.1.png": IMAGES[8],
    "root.png": IMAGES[9],  # at the root: unlabeled
    "notes.xyz": b"not a type the project takes",  # skipped
    "empty/": b"",  # folder marker: skipped
}
# (label, fixed category or None for split) of every item after the first run
EXPECTED_FIRST = {
    "cat/cat.1.png": ("cat", None),
    "cat/cat.2.png": ("cat", None),
    "cat/a b ü.3.png": ("cat", None),
    "dog/dog.1.png": ("dog", None),
    "dog/dog.2.png": ("dog", None),
    "training/bird/bird.1.png": ("bird", "training"),
    "testing/bird/bird.2.png": ("bird", "testing"),
    "training/unlabeled/y.png": (None, "training"),
    "unlabeled/x.1.png": (None, None),
    "root.png": (None, None),
}


def _config(bucket: str, pipeline_id: str = "e2e") -> dict:
    return {
        "id": pipeline_id,
        "name": "end-to-end test pipeline",
        "description": "Imports a test bucket through Airflow.",
        "project": pipeline_id,
        "intervalStr": "1d",
        "steps": [
            {
                "name": "import",
                "builtinTransformationBlock": {
                    "type": "s3-to-project",
                    "path": f"s3://{bucket}/{PREFIX}",
                    "awsConnId": CONN_ID,
                    "category": "split",
                    "labelStrategy": "infer-from-folder-name",
                    "syncDeletions": True,
                },
            }
        ],
    }


BROKEN = {
    "id": "broken",
    "name": "a broken config next to a good one",
    "project": "broken",
    "steps": [
        {
            "name": "bad",
            "builtinTransformationBlock": {
                "type": "s3-to-project",
                "path": "ftp://nowhere/",
                "labelStrategy": "infer-from-folder-name",
            },
        }
    ],
}


@pytest.fixture(scope="module")
def pipeline(airflow_env, s3_server):
    client = s3_server.client()
    bucket = "e2e-pipeline"
    client.create_bucket(Bucket=bucket)
    airflow_env.add_s3_connection(CONN_ID, s3_server.endpoint)
    airflow_env.add_pipeline("e2e.json", _config(bucket))
    airflow_env.add_pipeline("broken.json", BROKEN)
    return airflow_env, client, bucket


def _put(client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=PREFIX + key, Body=body)


def _run(env) -> dict[str, int]:
    env.airflow("dags", "test", "e2e")
    summary = json.loads(env.edgeloop("summary", "e2e", "--json"))
    return summary["sync"]


def _items(env, deleted: bool = False) -> dict[str, dict]:
    args = ["items", "e2e", "--json"] + (["--deleted"] if deleted else [])
    rows = json.loads(env.edgeloop(*args))
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)), f"duplicate items: {sorted(names)}"
    return {r["name"]: r for r in rows}


def _check_items(env, items: dict[str, dict], expected: dict[str, tuple], content: dict) -> None:
    assert sorted(items) == sorted(expected)
    blob_root = env.edgeloop_home / "blobs"
    for name, (label, category) in expected.items():
        item = items[name]
        sha = hashlib.sha256(content[name]).hexdigest()
        assert item["label"] == label, name
        assert item["source_key"] == PREFIX + name
        assert item["sha256"] == sha, name
        if category is None:
            assert item["category"] in ("training", "testing"), name
        else:
            assert item["category"] == category, name
        assert [f["sha256"] for f in item["files"]] == [sha], name
        blob = blob_root / item["files"][0]["blob_path"]
        assert blob.read_bytes() == content[name], f"blob of {name} at {blob}"


def _asset_events(env) -> list[dict]:
    """The events of the project's asset, oldest first, as stored in the metadata DB."""
    with closing(sqlite3.connect(env.home / "airflow.db")) as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = 'edgeloop-project-e2e' ORDER BY e.id"
        ).fetchall()
    events = [json.loads(extra) for (extra,) in rows]
    for event in events:
        event.pop("run_id")
    return events


def _blob_shas(root: Path) -> set[str]:
    return {
        p.name
        for p in root.rglob("*")
        if p.is_file() and len(p.name) == 64 and "tmp" not in p.relative_to(root).parts
    }


def test_sync_change_delete_and_rerun_through_airflow(pipeline):
    env, client, bucket = pipeline
    _put(client, bucket, FIRST)

    first = _run(env)
    assert first == {
        "listed": 13,
        "new": 10,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 1,
        "skipped": 2,
        "failed": 0,
        "deleted": 0,
        "gone": 0,
    }
    items = _items(env)
    _check_items(env, items, EXPECTED_FIRST, FIRST)
    stats = json.loads(env.edgeloop("stats", "e2e", "--json"))
    labels = stats["label"]  # "unlabeled" is spelled one way: (unlabeled)
    assert labels == {"(unlabeled)": 3, "bird": 2, "cat": 3, "dog": 2}
    summary = json.loads(env.edgeloop("summary", "e2e", "--json"))
    assert summary["items_per_label"] == labels
    assert sum(stats["category"].values()) == 10
    blob_root = env.edgeloop_home / "blobs"
    assert _blob_shas(blob_root) == {i["sha256"] for i in items.values()}

    # A re-run with nothing changed imports nothing and moves nothing.
    again = _run(env)
    assert again == {
        "listed": 13,
        "new": 0,
        "updated": 0,
        "unchanged": 11,
        "duplicates": 0,
        "skipped": 2,
        "failed": 0,
        "deleted": 0,
        "gone": 0,
    }
    assert _items(env) == items
    # the first run emitted the project's asset event with its counts; the no-change
    # run emitted none (its publish task was skipped)
    assert _asset_events(env) == [{"new": 10, "updated": 0, "deleted": 0, "items": 10}]

    # Add two, change one, delete one, add one copy of existing content.
    changed = {"cat/cat.2.png": IMAGES[10]}
    added = {
        "dog/dog.3.png": IMAGES[11],
        "horse/h.1.png": IMAGES[12],
        "dog/dog.copy.png": IMAGES[4],
    }
    _put(client, bucket, {**changed, **added})
    client.delete_object(Bucket=bucket, Key=PREFIX + "dog/dog.1.png")

    second = _run(env)
    assert second == {
        "listed": 15,
        "new": 2,
        "updated": 1,
        "unchanged": 9,
        "duplicates": 1,
        "skipped": 2,
        "failed": 0,
        "deleted": 1,
        "gone": 0,
    }
    assert _asset_events(env)[-1] == {"new": 2, "updated": 1, "deleted": 1, "items": 11}
    after = _items(env)
    expected = {k: v for k, v in EXPECTED_FIRST.items() if k != "dog/dog.1.png"}
    expected |= {"dog/dog.3.png": ("dog", None), "horse/h.1.png": ("horse", None)}
    content = {**FIRST, **changed, **added}
    _check_items(env, after, expected, content)
    # Nothing moved between training and testing; the changed item kept its identity.
    for name in EXPECTED_FIRST.keys() - {"dog/dog.1.png"}:
        assert after[name]["category"] == items[name]["category"], name
        assert after[name]["id"] == items[name]["id"], name
    # The deleted object's item is kept, marked deleted.
    with_deleted = _items(env, deleted=True)
    assert set(with_deleted) - set(after) == {"dog/dog.1.png"}
    assert with_deleted["dog/dog.1.png"]["deleted_at"]
    # Every blob belongs to an item (the changed object's old content may stay).
    shas = {i["sha256"] for i in with_deleted.values()}
    assert shas <= _blob_shas(blob_root) <= shas | {hashlib.sha256(IMAGES[1]).hexdigest()}
    leftovers = list((blob_root / "tmp").glob("*")) if (blob_root / "tmp").exists() else []
    assert leftovers == []


def test_what_the_ui_shows(pipeline):
    env, _, _ = pipeline
    details = env.airflow_json("dags", "details", "e2e")
    details = details[0] if isinstance(details, list) else details
    assert details["dag_display_name"] == "end-to-end test pipeline"
    assert details["timetable_summary"] == "0 0 * * *"  # the default, not "1 day, 0:00:00"
    assert details["timetable_description"] == "At 00:00"
    # the task's rendered fields hold the resolved arguments (no config re-read)
    with closing(sqlite3.connect(env.home / "airflow.db")) as db:
        rows = db.execute(
            "SELECT task_id, rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id = 'e2e'"
        ).fetchall()
    rendered = {task_id: json.loads(fields) for task_id, fields in rows}
    sync = rendered["import.sync"]
    assert (sync["bucket"], sync["prefix"], sync["project"], sync["conn_id"]) == (
        "e2e-pipeline",
        PREFIX,
        "e2e",
        CONN_ID,
    )


def test_broken_config_does_not_hide_the_good_pipeline(pipeline):
    env, _, _ = pipeline
    # What the dag-processor does for the UI: parse the DAG folder, store it in the DB.
    env.airflow("dags", "reserialize")
    # Read back what the UI shows, from the metadata DB itself.
    with closing(sqlite3.connect(env.home / "airflow.db")) as db:
        dags = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT dag_id, is_paused, description FROM dag WHERE NOT is_stale"
            )
        }
        tags = {(dag_id, name) for name, dag_id in db.execute("SELECT name, dag_id FROM dag_tag")}
        import_errors = db.execute("SELECT filename, stacktrace FROM import_error").fetchall()
    assert set(dags) == {"e2e", "broken"}
    # The DAG file itself imports fine: the broken config is no import error...
    assert import_errors == []
    # ...it is a paused DAG tagged invalid-config whose description names the problem.
    paused, description = dags["broken"]
    assert paused
    assert ("broken", "invalid-config") in tags
    assert "INVALID CONFIG" in description
    assert "broken.json" in description
    assert "$.steps[0].builtinTransformationBlock.path" in description
    # The good pipeline is a normal DAG, not paused, not tagged invalid.
    assert not dags["e2e"][0]
    assert ("e2e", "invalid-config") not in tags
    assert ("e2e", "project:e2e") in tags
