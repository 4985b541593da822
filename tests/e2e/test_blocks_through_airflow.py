"""The research pipeline (include/pipelines/health-study.json) through `airflow dags test`
against a real S3 server: the standalone sorter over the mounted data lake and portal, the
checklist per subject, the combiner for the subjects whose checklist passes, the RMS block
into the project. Then: a second run skips everything; changing one subject's file re-runs
only that subject; ignoreLastSuccessfulRun re-runs all."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from edgeloop.research.sample_data import generate_health_study
from edgeloop.storage.blobs import BlobStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUCKET = "edgeloop-study"
CONN_ID = "edgeloop_demo_s3"
SUBJECTS = ["AMS_001", "AMS_002", "AMS_003", "AMS_004", "AMS_005"]
GOOD = ["AMS_001", "AMS_005"]
# the subjects' overall check after run 1, on their item in 'AMS sorted': the checklist
# fails AMS_002 (no PPG) and AMS_004 (a gap in the labels); AMS_003 passes it, and the
# combiner (PPG unrelated to the reference heart rate) writes ei_check 0 onto it
CHECK = {"AMS_001": "1", "AMS_002": "0", "AMS_003": "0", "AMS_004": "0", "AMS_005": "1"}
STEPS = ("sort_the_study", "checklist_per_subject", "combine_each_subject", "rms_per_label")


@pytest.fixture(scope="module")
def study(airflow_env, s3_server, tmp_path_factory):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("study")
    study = generate_health_study(root / "study", len(SUBJECTS), minutes=3)
    for path in sorted(p for p in study.root.rglob("*") if p.is_file()):
        client.put_object(
            Bucket=BUCKET, Key=str(path.relative_to(study.root)), Body=path.read_bytes()
        )
    airflow_env.add_s3_connection(CONN_ID, s3_server.endpoint)
    venvs = tmp_path_factory.getbasetemp() / "edgeloop-block-venvs"  # shared with block tests
    airflow_env.env["EDGELOOP_BLOCK_VENVS"] = str(venvs)
    shutil.copy(REPO / "include/pipelines/health-study.json", airflow_env.pipelines_dir)
    return airflow_env, client, study


def run(env, *conf: str) -> dict:
    env.airflow("dags", "test", "health-study", *conf)
    return json.loads(env.edgeloop("summary", "health-study", "--json"))


def items(env, dataset: str) -> dict[str, dict]:
    rows = json.loads(env.edgeloop("items", dataset, "--json"))
    return {r["name"]: r for r in rows}


def ran(env, run_id: str) -> dict[str, list[str]]:
    """The units each step ran in a run (from the catalog's ledger)."""
    db = env.edgeloop_home / "catalog.db"
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT l.step, i.name FROM block_ledger l LEFT JOIN items i ON i.id = l.item_id "
            "WHERE l.run_id = ? AND l.status = 'ok'",
            (run_id,),
        ).fetchall()
    out: dict[str, list[str]] = {s: [] for s in STEPS}
    for step, name in rows:
        out[step].append(name or "(standalone)")
    return {k: sorted(v) for k, v in out.items()}


def blob(env, sha: str) -> bytes:
    return BlobStore(env.edgeloop_home / "blobs").read_bytes(sha)


def test_research_pipeline_through_airflow(study) -> None:
    env, client, st = study

    first = run(env)
    assert first["blocks"]["failed"] == 0
    assert ran(env, first["run_id"]) == {
        "sort_the_study": ["(standalone)"],
        "checklist_per_subject": SUBJECTS,
        "combine_each_subject": ["AMS_001", "AMS_003", "AMS_005"],
        "rms_per_label": GOOD,
    }
    sorted_items = items(env, "AMS sorted")
    assert sorted(sorted_items) == SUBJECTS
    for subject in st.subjects:
        item = sorted_items[subject.study_id]
        names = {f["name"] for f in item["files"]}
        expected = {"accelerometer.csv", "ppg.csv", "polar_h10.csv", "labels.csv"}
        if subject.broken == "missing_ppg":
            expected.discard("ppg.csv")
        assert names == expected
        assert item["metadata"]["internal_id"] == subject.internal_id  # the master sheet
        assert item["metadata"]["ei_check"] == CHECK[subject.study_id], subject.study_id
    failing = json.loads(
        env.edgeloop("items", "AMS sorted", "--filter", "metadata->ei_check = 0", "--json")
    )
    assert sorted(r["name"] for r in failing) == ["AMS_002", "AMS_003", "AMS_004"]

    combined = items(env, "AMS Activity 2022")
    assert sorted(combined) == GOOD
    for name in GOOD:
        files = {f["name"]: f for f in combined[name]["files"]}
        assert sorted(files) == ["combined.parquet", "hr.png"]
        table = pq.read_table(io.BytesIO(blob(env, files["combined.parquet"]["sha256"])))
        assert table.num_rows > 100 and "label" in table.column_names
        assert combined[name]["metadata"]["ei_check"] == "1"

    project = items(env, "health-study")
    assert sorted(project) == [f"{s}/combined_rms.parquet" for s in GOOD]
    for item in project.values():
        assert item["category"] in ("training", "testing")
        rms = pq.read_table(io.BytesIO(blob(env, item["files"][0]["sha256"])))
        assert "label" in rms.column_names and rms.num_rows >= 2
    # 5 sorted + 2 combined + 2 project items created; of those with a checklist, 6 pass
    assert first["checklist"] == {"ok": 6, "fail": 3}
    checklist = env.edgeloop("items", "AMS sorted", "--checklist")
    assert "AMS_002" in checklist and "✘ ppg_present" in checklist
    assert "✔ accelerometer_present" in checklist

    second = run(env)
    assert ran(env, second["run_id"]) == {s: [] for s in STEPS}
    assert second["blocks"]["ran"] == 0 and second["checklist"] == {"ok": 0, "fail": 0}
    assert items(env, "AMS Activity 2022") == combined

    # one subject's data-lake file changes: only that subject goes through again
    subject = next(s for s in st.subjects if s.study_id == "AMS_005")
    key = f"data-lake/{subject.internal_id}/accelerometer.csv"
    text = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    lines = text.splitlines()
    ts, x, y, z = lines[len(lines) // 2].split(",")
    lines[len(lines) // 2] = f"{ts},{float(x) + 0.5},{y},{z}"  # one sample mid-session
    client.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
    third = run(env)
    assert ran(env, third["run_id"]) == {
        "sort_the_study": ["(standalone)"],
        "checklist_per_subject": ["AMS_005"],
        "combine_each_subject": ["AMS_005"],
        "rms_per_label": ["AMS_005"],
    }
    after = items(env, "AMS Activity 2022")
    assert after["AMS_001"] == combined["AMS_001"]
    assert after["AMS_005"]["files"] != combined["AMS_005"]["files"]

    forced = run(env, "-c", json.dumps({"ignoreLastSuccessfulRun": True}))
    assert ran(env, forced["run_id"]) == {
        "sort_the_study": ["(standalone)"],
        "checklist_per_subject": SUBJECTS,
        "combine_each_subject": ["AMS_001", "AMS_003", "AMS_005"],
        "rms_per_label": GOOD,
    }
    assert items(env, "AMS Activity 2022") == after  # same inputs, same outputs
