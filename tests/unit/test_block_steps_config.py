"""Block steps in configs: what validation refuses (with the JSON path), what the builder
makes (plan → mapped run → collect), and the checklist line of `edgeloop items`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeloop.catalog.cli import checklist_line
from edgeloop.dag_factory import build_files, check_files
from edgeloop.transform.blocks import StepSpec

COMBINE = {
    "name": "Combine each subject",
    "transformationBlockId": "research-combiner",
    "filter": "dataset = 'AMS sorted' AND file_names CONTAINS 'ppg.csv'",
    "parameters": {"min-correlation": "0.5"},
    "transformationParallel": 4,
    "extraCliArguments": "",
    "uploadType": "dataset",
    "outputDatasetName": "AMS Activity 2022",
    "outputDatasetPathRule": "subfolder-per-item",
}


def errors_for(tmp_path: Path, step: dict) -> list[str]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "p", "steps": [step]}))
    return [f"{e.path}: {e}" for e in check_files([path]).get(str(path), [])]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"transformationBlockId": "nope"}, ["$.steps[0].transformationBlockId", "include/blocks"]),
        ({"filter": "dataset = "}, ["$.steps[0].filter", "^"]),
        ({"filter": None}, ["$.steps[0].filter", "give a filter"]),
        ({"parameters": {"no-such": "1"}}, ["$.steps[0].parameters", "unknown parameter"]),
        ({"parameters": {"min-correlation": "high"}}, ["$.steps[0].parameters"]),
        ({"extraCliArguments": "--x"}, ["$.steps[0].extraCliArguments", "does not allow"]),
        ({"outputDatasetName": None}, ["$.steps[0].outputDatasetName", "needs"]),
        ({"label": "x"}, ["$.steps[0].label", "uploadType 'project'"]),
        ({"uploadType": "project"}, ["$.steps[0].outputDatasetName", "goes with"]),
    ],
)
def test_validation_refuses_with_the_path(tmp_path: Path, change: dict, expected: list) -> None:
    step = {k: v for k, v in {**COMBINE, **change}.items() if v is not None}
    text = "\n".join(errors_for(tmp_path, step))
    for part in expected:
        assert part in text, text


def test_standalone_block_takes_no_filter(tmp_path: Path) -> None:
    step = {
        "name": "sort",
        "transformationBlockId": "research-sorter",
        "filter": "dataset = 'x'",
        "parameters": {"lake-dir": "/a", "portal-dir": "/b", "master-sheet": "/c"},
        "outputDatasetName": "AMS sorted",
    }
    assert any("standalone" in e for e in errors_for(tmp_path, step))


def test_blocks_path_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "blocks"
    step = {
        "name": "ref",
        "transformationBlockId": "reference-style",
        "filter": "dataset = 'x'",
        "outputDatasetName": "x",
    }
    assert any("unknown transformation block" in e for e in errors_for(tmp_path, step))
    monkeypatch.setenv("EDGELOOP_BLOCKS_PATH", str(fixtures))
    assert errors_for(tmp_path, step) == []


def test_the_builder_maps_a_batch_operator_over_plan_ids(tmp_path: Path) -> None:
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"name": "blocks only", "steps": [COMBINE]}))
    built = build_files([path])
    assert built.errors == {}
    dag = built.dags["blocks"]
    group = "combine_each_subject"
    assert list(dag.task_dict)[:3] == [f"{group}.plan", f"{group}.run", f"{group}.collect"]
    run = dag.task_dict[f"{group}.run"]
    assert run.max_active_tis_per_dagrun == 4
    assert run.partial_kwargs["map_index_template"] == "batch {{ task.batch }}"
    assert dag.task_dict[f"{group}.collect"].trigger_rule == "none_failed"
    assert f"{group}.collect" in dag.task_dict["summary"].upstream_task_ids
    assert dag.task_dict[f"{group}.plan"].spec["upload_type"] == "dataset"


def test_step_spec_round_trips_and_hashes_what_shapes_results() -> None:
    spec = StepSpec(block_id="b", parameters=(("a", "1"),), output_dataset_name="o")
    assert StepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    other = StepSpec(block_id="b", parameters=(("a", "2"),), output_dataset_name="o")
    assert spec.params_sha() != other.params_sha()
    wider = StepSpec(block_id="b", parameters=(("a", "1"),), output_dataset_name="o", parallel=8)
    assert spec.params_sha() == wider.params_sha()  # parallelism does not change results


def test_checklist_line() -> None:
    meta = {"ei_check": "0", "ei_check_ppg_present": "0", "ei_check_labels": "1", "age": "3"}
    assert checklist_line("AMS_002", meta) == "AMS_002  ✘  ✔ labels  ✘ ppg_present"
    assert checklist_line("x", {"a": "1"}) == "x  (no checklist)"
