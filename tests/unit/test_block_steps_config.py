"""Block steps in configs: what validation refuses (with the JSON path), what the builder
makes (one mapped run task over the slots), and the checklist line of `edgeloop items`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.definitions.mappedoperator import MappedOperator

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


def test_the_builder_maps_one_slot_operator_over_literal_slots(tmp_path: Path) -> None:
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"name": "blocks only", "steps": [COMBINE]}))
    built = build_files([path])
    assert built.errors == {}
    dag = built.dags["blocks"]
    group = "combine_each_subject"
    mine = [t for t in dag.task_dict if t.startswith(f"{group}.")]
    assert mine == [f"{group}.run"]  # one task hop: no plan, no collect
    run = dag.task_dict[f"{group}.run"]
    assert isinstance(run, MappedOperator)
    assert run.expand_input.value == {"slot": [0, 1, 2, 3]}  # known when the DAG is built
    assert run.partial_kwargs["slots"] == 4
    assert run.max_active_tis_per_dagrun == 4
    assert run.partial_kwargs["map_index_template"] == "slot {{ task.slot }}"
    assert run.partial_kwargs["spec"]["upload_type"] == "dataset"
    assert f"{group}.run" in dag.task_dict["summary"].upstream_task_ids
    assert dag.task_dict["summary"].block_task_ids == [f"{group}.run"]
    # the first task records the config the run executes; the summary compares with it
    assert run.partial_kwargs["first_task_id"] == f"{group}.run"


def test_a_standalone_block_gets_one_slot_and_parallel_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sorter = {
        "name": "sort",
        "transformationBlockId": "research-sorter",
        "parameters": {"lake-dir": "/a", "portal-dir": "/b", "master-sheet": "/c"},
        "transformationParallel": 8,
        "outputDatasetName": "AMS sorted",
    }
    wide = {**COMBINE, "transformationParallel": 50}
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"name": "blocks only", "steps": [sorter, wide]}))
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "6")
    dag = build_files([path]).dags["blocks"]
    assert dag.task_dict["sort.run"].expand_input.value == {"slot": [0]}
    assert dag.task_dict["combine_each_subject.run"].expand_input.value == {"slot": list(range(6))}


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


def test_mapped_results_take_what_xcom_pull_gives_for_a_mapped_task() -> None:
    from edgeloop.operators.blocks import mapped_results

    assert mapped_results(None) == []
    assert mapped_results({"ran": 1}) == [{"ran": 1}]  # one instance: the value itself
    assert mapped_results([{"ran": 1}, None, {"ran": 2}]) == [{"ran": 1}, {"ran": 2}]


class _TI:
    def __init__(self, pulled: object) -> None:
        self.pulled = pulled

    def xcom_pull(self, **_: object) -> object:
        return self.pulled

    def xcom_push(self, **_: object) -> None:
        raise AssertionError("only the first task records the config")


@pytest.mark.parametrize(
    ("pulled", "fails"),
    [("abc", False), (["abc", "abc"], False), (["abc", None], False), (["abc", "new"], True)],
)
def test_config_check_after_a_mapped_first_task(pulled: object, fails: bool) -> None:
    """A block-first pipeline's first task is the mapped ``run``: later tasks pull one
    config sha per slot."""
    from edgeloop.errors import ConfigError
    from edgeloop.operators.run import RunSummaryOperator

    task = RunSummaryOperator(
        task_id="summary",
        project="p",
        pipeline_id="p",
        config_file="p.json",
        config_sha256="abc",
        first_task_id="step.run",
    )
    context = {"ti": _TI(pulled)}
    if fails:
        with pytest.raises(ConfigError, match="changed while this run was going on"):
            task.check_config(context)  # type: ignore[arg-type]
    else:
        task.check_config(context)  # type: ignore[arg-type]
