"""Block steps as plain functions (plan → run_batch → collect) over items synced from a real
S3 server: a block written like the reference platform's public ones runs unmodified; the
incremental ledger; failures recorded per unit; outputs content-addressed; standalone
blocks' folders as items; s3:// parameters mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.catalog.store import Catalog
from edgeloop.errors import BlockError, ConfigError
from edgeloop.ingest.source import SourceSpec
from edgeloop.ingest.sync import sync_source
from edgeloop.transform.batch import checklist_counts, collect_step, run_batch
from edgeloop.transform.blocks import StepSpec, find_block
from edgeloop.transform.plan import plan_step

REPO = Path(__file__).resolve().parents[2]
FIXTURE_BLOCKS = REPO / "tests" / "fixtures" / "blocks"
PREFIX = "raw/"
CSV = {
    "walk/s1.csv": b"x,y,z\n1,2,3\n-4,5,6\n",
    "walk/s2.csv": b"x,y,z\n2,2,2\n8,1,1\n",
    "run/s3.csv": b"x,y,z\n0.5,1,1\n3,3,3\n",
}


@pytest.fixture
def synced(edgeloop_home, s3_client, s3_bucket, conn_id, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("EDGELOOP_BLOCKS_PATH", str(FIXTURE_BLOCKS))
    monkeypatch.setenv("EDGELOOP_BLOCK_VENVS", str(tmp_path.parent / "block-venvs-shared"))
    for key, body in CSV.items():
        s3_client.put_object(Bucket=s3_bucket, Key=PREFIX + key, Body=body)
    spec = SourceSpec(
        scheme="s3",
        bucket=s3_bucket,
        prefix=PREFIX,
        conn_id=conn_id,
        file_types=(".csv",),
    )
    sync_source(spec, "ref")
    return {"bucket": s3_bucket, "conn_id": conn_id, "spec": spec}


def run_step(spec: StepSpec, run_id: str, *, force: bool = False, step: str = "s") -> dict:
    plan = plan_step(spec, pipeline_id="p", run_id=run_id, step=step, force=force)
    errors = []
    for batch in plan.batches:
        try:
            run_batch(spec, pipeline_id="p", run_id=run_id, step=step, batch=batch)
        except BlockError as exc:
            errors.append(str(exc))
    counts = collect_step(pipeline_id="p", run_id=run_id, step=step)
    return {"plan": plan.counts(), "counts": counts, "errors": errors}


def items_of(dataset: str) -> dict[str, dict]:
    return {i["name"]: i for i in Catalog.from_settings().list_items(dataset)}


REF = StepSpec(
    block_id="reference-style",
    filter="dataset = 'ref' AND file_name LIKE 's_.csv'",  # the inputs, not the outputs
    parameters=(("axis", "y"), ("window-length", "100"), ("normalize", "true")),
    parallel=2,
    extra_cli_arguments="--unknown-flag 7",
    upload_type="dataset",
    output_dataset_name="ref",
    project="ref",
)


def test_reference_style_block_runs_unmodified_over_synced_items(synced) -> None:
    got = run_step(REF, "run1")
    assert got["errors"] == []
    assert got["plan"] == {"selected": 3, "skipped": 0, "todo": 3, "batches": 2}
    assert got["counts"]["ran"] == 3 and got["counts"]["updated"] == 3
    items = items_of("ref")
    assert sorted(items) == sorted(CSV)
    for name, item in items.items():
        stem = Path(name).stem
        assert sorted(f["name"] for f in item["files"]) == sorted([f"{stem}.csv", f"{stem}_y.csv"])
        meta = item["metadata"]
        # numbers stored as strings, the echoed dataItemInfo ignored, the real one passed
        assert meta["ei_check_files_present"] == "1"
        assert meta["normalized"] == "1" and meta["window_length"] == "100"
        assert meta["item_name"] == name
        assert meta["extra"].endswith("--unknown-flag 7")  # extraCliArguments passed
        assert meta["last_run"] == ""  # no successful run of pipeline p yet
        assert "dataItemInfo" not in meta
    blob_root = synced_blob_root()
    out = next(f for f in items["walk/s1.csv"]["files"] if f["name"] == "s1_y.csv")
    assert (blob_root / out["blob_path"]).read_bytes() == b"y\n0.4000\n1.0000\n"

    again = run_step(REF, "run2")
    assert again["plan"] == {"selected": 3, "skipped": 3, "todo": 0, "batches": 0}
    assert items_of("ref") == items

    forced = run_step(REF, "run3", force=True)
    assert forced["plan"]["todo"] == 3 and forced["counts"]["unchanged"] == 3
    assert items_of("ref") == items  # identical outputs: nothing changes, nothing stored twice


def synced_blob_root() -> Path:
    from edgeloop.settings import get_settings

    return Path(get_settings().blob_root)


def test_changed_input_reruns_only_that_item(synced, s3_client) -> None:
    run_step(REF, "run1")
    s3_client.put_object(
        Bucket=synced["bucket"], Key=PREFIX + "walk/s2.csv", Body=b"x,y,z\n1,4,1\n1,-8,1\n"
    )
    sync_source(synced["spec"], "ref")
    got = run_step(REF, "run2")
    assert got["plan"] == {"selected": 3, "skipped": 2, "todo": 1, "batches": 1}
    s2 = items_of("ref")["walk/s2.csv"]
    out = next(f for f in s2["files"] if f["name"] == "s2_y.csv")
    assert (synced_blob_root() / out["blob_path"]).read_bytes() == b"y\n0.5000\n-1.0000\n"
    assert s2["metadata"]["peak"] == "1.0"  # normalized


def test_one_failure_does_not_stop_the_others_and_a_rerun_redoes_only_it(synced) -> None:
    spec = StepSpec(
        block_id="exit-one",
        filter="dataset = 'ref'",
        upload_type="dataset",
        output_dataset_name="ref",
        project="ref",
    )
    got = run_step(spec, "run1")
    assert got["counts"]["failed"] == 3
    assert "exit code 1" in got["errors"][0]
    with Catalog.from_settings().engine.connect() as conn:
        from edgeloop.catalog.tables import block_ledger

        rows = conn.execute(block_ledger.select()).all()
    assert {r.status for r in rows} == {"failed"} and {r.exit_code for r in rows} == {1}
    assert all(r.tail for r in rows)


def test_unknown_block_names_the_folders_searched(synced) -> None:
    with pytest.raises(ConfigError) as err:
        find_block("no-such-block")
    assert str(FIXTURE_BLOCKS) in str(err.value) and "include/blocks" in str(err.value)


def test_standalone_block_with_mounted_bucket_makes_items(synced, s3_client, tmp_path) -> None:
    spec = StepSpec(
        block_id="research-sorter",
        parameters=(
            ("lake-dir", f"s3://{synced['bucket']}/study/data-lake/"),
            ("portal-dir", f"s3://{synced['bucket']}/study/portal/"),
            ("master-sheet", f"s3://{synced['bucket']}/study/master_sheet.csv"),
        ),
        upload_type="dataset",
        output_dataset_name="sorted",
        aws_conn_id=synced["conn_id"],
        project="ref",
    )
    from edgeloop.research.sample_data import generate_health_study

    study = generate_health_study(tmp_path / "study", 4, minutes=1, broken=False)
    for path in sorted(p for p in study.root.rglob("*") if p.is_file()):
        key = "study/" + str(path.relative_to(study.root))
        s3_client.put_object(Bucket=synced["bucket"], Key=key, Body=path.read_bytes())
    got = run_step(spec, "run1")
    assert got["errors"] == [] and got["counts"]["created"] == 4
    items = items_of("sorted")
    assert sorted(items) == [s.study_id for s in study.subjects]
    first = study.subjects[0]
    assert items[first.study_id]["metadata"]["internal_id"] == first.internal_id
    assert sorted(f["name"] for f in items[first.study_id]["files"]) == [
        "accelerometer.csv",
        "labels.csv",
        "polar_h10.csv",
        "ppg.csv",
    ]
    assert run_step(spec, "run2")["plan"]["todo"] == 0  # the mounted listing is unchanged
    assert checklist_counts(Catalog.from_settings(), "p", "run1") == {"ok": 0, "fail": 0}
