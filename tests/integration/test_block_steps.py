"""Block steps as plain functions (the slots of the mapped task: ``run_slot``) over items
synced from a real S3 server, on a SQLite and a PostgreSQL catalog: a block written like the
reference platform's public ones runs unmodified; the output path rules; the incremental
ledger; the slots' race for the run's plan; failures recorded per unit and a cleared slot
redoing only them; outputs content-addressed; standalone blocks' folders as items; s3://
parameters mounted."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import block_batches, block_ledger
from edgeloop.errors import BlockError, ConfigError
from edgeloop.ingest.source import SourceSpec
from edgeloop.ingest.sync import sync_source
from edgeloop.summary import BLOCK_KEYS
from edgeloop.transform import plan as plan_module
from edgeloop.transform.batch import checklist_counts, last_successful_run, run_slot
from edgeloop.transform.blocks import StepSpec, find_block
from edgeloop.transform.plan import PLAN_ROW, plan_step, stored_plan

REPO = Path(__file__).resolve().parents[2]
FIXTURE_BLOCKS = REPO / "tests" / "fixtures" / "blocks"
PREFIX = "raw/"
CSV = {
    "walk/s1.csv": b"x,y,z\n1,2,3\n-4,5,6\n",
    "walk/s2.csv": b"x,y,z\n2,2,2\n8,1,1\n",
    "run/s3.csv": b"x,y,z\n0.5,1,1\n3,3,3\n",
}


@pytest.fixture
def synced(catalog_url, s3_client, s3_bucket, conn_id, monkeypatch, tmp_path) -> dict:
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


def run_step(
    spec: StepSpec,
    run_id: str,
    *,
    force: bool = False,
    step: str = "s",
    slots: int | None = None,
    only: list[int] | None = None,
) -> dict:
    """Run the step's slots one after the other as the mapped task's instances would
    (``only``: just those slots, as when failed instances are cleared); the counts are
    added up over the slots' results as the summary adds up their XComs."""
    slots = slots or spec.parallel
    results, errors = [], []
    for slot in only if only is not None else range(slots):
        try:
            results.append(
                run_slot(
                    spec,
                    pipeline_id="p",
                    run_id=run_id,
                    step=step,
                    slot=slot,
                    slots=slots,
                    force=force,
                )
            )
        except BlockError as exc:
            errors.append(str(exc))
    plan = stored_plan(Catalog.from_settings(), pipeline_id="p", run_id=run_id, step=step)
    assert plan is not None
    counts = {k: sum(int(r.get(k, 0)) for r in results) for k in BLOCK_KEYS}
    return {"plan": plan.counts(), "counts": counts, "errors": errors, "results": results}


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
    assert (got["counts"]["selected"], got["counts"]["skipped"]) == (3, 0)  # from slot 0
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
    assert again["counts"] == {**dict.fromkeys(BLOCK_KEYS, 0), "selected": 3, "skipped": 3}
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
    assert len(got["errors"]) == 1 and "3 of 3 unit(s) failed" in got["errors"][0]
    assert "exit code 1" in got["errors"][0]
    with Catalog.from_settings().engine.connect() as conn:
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
    got = run_step(spec, "run1", slots=1)
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
    assert run_step(spec, "run2", slots=1)["plan"]["todo"] == 0  # the mounted listing is the same
    assert checklist_counts(Catalog.from_settings(), "p", "run1") == {"ok": 0, "fail": 0}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # one item per input item, named after it, holding the outputs
        (
            "subfolder-per-item",
            {"walk/s1.csv": ["s1_y.csv"], "walk/s2.csv": ["s2_y.csv"], "run/s3.csv": ["s3_y.csv"]},
        ),
        # each output file an item of its own, named after the file
        (
            "no-subfolders",
            {"s1_y.csv": ["s1_y.csv"], "s2_y.csv": ["s2_y.csv"], "s3_y.csv": ["s3_y.csv"]},
        ),
        # one item per input item, named after its full bucket path (the source key)
        (
            "use-full-path",
            {
                "raw/walk/s1.csv": ["s1_y.csv"],
                "raw/walk/s2.csv": ["s2_y.csv"],
                "raw/run/s3.csv": ["s3_y.csv"],
            },
        ),
    ],
)
def test_output_dataset_path_rules(synced, rule: str, expected: dict[str, list[str]]) -> None:
    catalog = Catalog.from_settings()
    catalog.record_run("p", "earlier", "ref", {})  # a successful run before: its time is passed
    last = last_successful_run(catalog, "p")
    spec = dataclasses.replace(REF, output_dataset_name="out", output_dataset_path_rule=rule)
    got = run_step(spec, "run1")
    assert got["errors"] == [] and got["counts"]["created"] == 3
    made = items_of("out")
    assert {name: sorted(f["name"] for f in item["files"]) for name, item in made.items()} == (
        expected
    )
    for item in made.values():
        meta = item["metadata"]
        assert meta["ei_check_files_present"] == "1" and meta["axis"] == "y"
        assert meta["last_run"] == last  # EI_LAST_SUCCESSFUL_RUN
    assert sorted(items_of("ref")) == sorted(CSV)  # the inputs are untouched
    assert all(len(i["files"]) == 1 for i in items_of("ref").values())
    assert run_step(spec, "run2")["plan"]["todo"] == 0


def test_slots_race_for_the_plan_and_exactly_one_is_stored(synced, monkeypatch) -> None:
    """Every slot computes a plan before any stores one (a barrier), then all insert at
    once: the unique constraint lets one in; the others read it."""
    slots = 6
    barrier = threading.Barrier(slots, timeout=60)
    real = plan_module.make_plan

    def make_plan_then_wait(*args, **kwargs):
        made = real(*args, **kwargs)
        barrier.wait()
        return made

    monkeypatch.setattr(plan_module, "make_plan", make_plan_then_wait)
    spec = dataclasses.replace(REF, parallel=slots)
    plans: list = [None] * slots
    errors: list[BaseException] = []

    def slot(i: int) -> None:
        try:
            plans[i] = plan_step(spec, pipeline_id="p", run_id="race", step="s", slots=slots)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=slot, args=(i,)) for i in range(slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(p.stored_here for p in plans) == 1
    assert {dataclasses.replace(p, stored_here=False) for p in plans} == {
        dataclasses.replace(plans[0], stored_here=False)
    }
    assert plans[0].counts() == {"selected": 3, "skipped": 0, "todo": 3, "batches": 3}
    with Catalog.from_settings().engine.connect() as conn:
        rows = conn.execute(
            sa.select(block_batches.c.batch, block_batches.c.units).where(
                block_batches.c.run_id == "race"
            )
        ).all()
    assert sorted(r.batch for r in rows) == [PLAN_ROW, 0, 1, 2]
    units = [u["unit"] for r in rows if r.batch != PLAN_ROW for u in json.loads(r.units)["units"]]
    assert len(units) == len(set(units)) == 3  # every unit in exactly one batch


def test_a_slot_without_a_batch_succeeds_with_zero_counts(synced, caplog) -> None:
    spec = dataclasses.replace(REF, filter="dataset = 'ref' AND file_name = 's1.csv'", parallel=4)
    with caplog.at_level(logging.INFO, logger="edgeloop.transform.batch"):
        got = run_step(spec, "run1")
    assert got["errors"] == [] and got["plan"]["batches"] == 1
    assert [r["ran"] for r in got["results"]] == [1, 0, 0, 0]
    assert got["results"][3] == dict.fromkeys(got["results"][3], 0)
    assert "slot 3: no batch to run (the plan has 1 batch(es) for 1 unit(s) to run)" in caplog.text


FLAKY = {
    "version": 1,
    "info": {"name": "Flaky", "operatesOn": "file"},
    "parameters": [{"name": "Fail list", "type": "string", "param": "fail-list", "value": ""}],
}
FLAKY_TRANSFORM = """\
import argparse, os, sys
p = argparse.ArgumentParser()
p.add_argument("--in-file"); p.add_argument("--out-directory"); p.add_argument("--fail-list")
a, _ = p.parse_known_args()
name = os.path.basename(a.in_file)
if name in open(a.fail_list).read().split():
    print("refusing", name, file=sys.stderr)
    sys.exit(3)
open(os.path.join(a.out_directory, name + ".len"), "w").write(str(os.path.getsize(a.in_file)))
"""


def test_a_cleared_failed_slot_redoes_only_its_failed_units(synced, tmp_path, monkeypatch) -> None:
    blocks = tmp_path / "more-blocks"
    (blocks / "flaky").mkdir(parents=True)
    (blocks / "flaky" / "parameters.json").write_text(json.dumps(FLAKY))
    (blocks / "flaky" / "transform.py").write_text(FLAKY_TRANSFORM)
    monkeypatch.setenv("EDGELOOP_BLOCKS_PATH", os.pathsep.join([str(FIXTURE_BLOCKS), str(blocks)]))
    fail_list = tmp_path / "fail.txt"
    fail_list.write_text("s2.csv\n")
    spec = StepSpec(
        block_id="flaky",
        filter="dataset = 'ref'",
        parameters=(("fail-list", str(fail_list)),),
        parallel=2,
        output_dataset_name="lengths",
        project="ref",
    )
    # units by (dataset, name): run/s3, walk/s1, walk/s2 → batch 0 [s3, s2], batch 1 [s1]
    got = run_step(spec, "run1")
    assert len(got["errors"]) == 1
    assert "1 of 2 unit(s) failed" in got["errors"][0]
    assert "ref/walk/s2.csv/s2.csv (exit code 3)" in got["errors"][0]
    assert [r["ran"] for r in got["results"]] == [1]  # slot 1 succeeded, slot 0 raised
    assert sorted(items_of("lengths")) == ["run/s3.csv", "walk/s1.csv"]

    fail_list.write_text("")  # fixed; clear the failed instance (slot 0) of the same run
    again = run_step(spec, "run1", only=[0])
    assert again["errors"] == []
    (result,) = again["results"]
    assert (result["ran"], result["skipped"], result["failed"]) == (1, 1, 0)  # s2 only
    assert sorted(items_of("lengths")) == ["run/s3.csv", "walk/s1.csv", "walk/s2.csv"]
    with Catalog.from_settings().engine.connect() as conn:
        ledger = conn.execute(sa.select(block_ledger.c.status, block_ledger.c.run_id)).all()
        plans = conn.execute(
            sa.select(sa.func.count()).where(block_batches.c.batch == PLAN_ROW)
        ).scalar()
    assert sorted(ledger) == [("ok", "run1")] * 3
    assert plans == 1  # the re-run read the run's plan, it did not make another
    assert run_step(spec, "run2")["plan"]["todo"] == 0  # a new run: nothing left to do
