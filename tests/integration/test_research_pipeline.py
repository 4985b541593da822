"""The research-data pipeline end to end through the block runner:
sample study -> research-sorter -> research-checklist -> research-combiner."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from edgeloop.blocks.runner import BlockResult, run_block
from edgeloop.research.sample_data import Study, generate_health_study

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BLOCKS = REPO / "include" / "blocks"
CONTRACT = json.loads((REPO / "include" / "schemas" / "research-combined.schema.json").read_text())

# subject -> (checks research-checklist must fail, checks research-combiner must fail)
EXPECTED_FAILURES = {
    "AMS_001": (set(), set()),
    "AMS_002": ({"ei_check_ppg_present"}, {"ei_check_ppg_file_present"}),
    "AMS_003": (set(), {"ei_check_hr_correlation_min"}),
    "AMS_004": ({"ei_check_labels_contiguous"}, {"ei_check_labels_cover_recording"}),
    "AMS_005": (set(), set()),
}
GOOD = ("AMS_001", "AMS_005")


@dataclass
class PipelineRun:
    study: Study
    sorted_dir: Path
    combined_dir: Path
    sort: BlockResult
    venvs: Path
    checklist: dict[str, BlockResult]
    combiner: dict[str, BlockResult]


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    root = tmp_path_factory.mktemp("health-study")
    study = generate_health_study(root / "study", 5, minutes=6)
    venvs = tmp_path_factory.getbasetemp() / "edgeloop-block-venvs"  # shared with other block tests
    venvs.mkdir(exist_ok=True)
    sorted_dir = root / "sorted"
    sort = run_block(
        BLOCKS / "research-sorter",
        out_directory=sorted_dir,
        venvs=venvs,
        params={
            "lake-dir": str(study.lake),
            "portal-dir": str(study.portal),
            "master-sheet": str(study.master_sheet),
        },
    )

    def one_item(study_id: str) -> tuple[str, BlockResult, BlockResult]:
        checked = run_block(
            BLOCKS / "research-checklist",
            in_directory=sorted_dir / study_id,
            out_directory=root / "checked" / study_id,
            metadata=sort.item_metadata[study_id],
            venvs=venvs,
        )
        combined = run_block(
            BLOCKS / "research-combiner",
            in_directory=sorted_dir / study_id,
            out_directory=root / "combined" / study_id,
            metadata=checked.metadata,
            venvs=venvs,
        )
        return study_id, checked, combined

    # build the two venvs once before going parallel (the runner also locks the build)
    first = one_item("AMS_001")
    with ThreadPoolExecutor(max_workers=2) as pool:
        rest = list(pool.map(one_item, sorted(sort.item_metadata)[1:]))
    results = [first, *rest]
    return PipelineRun(
        study,
        sorted_dir,
        root / "combined",
        sort,
        venvs,
        {s: c for s, c, _ in results},
        {s: m for s, _, m in results},
    )


def failing(metadata: dict[str, str]) -> set[str]:
    return {k for k, v in metadata.items() if k.startswith("ei_check_") and v != "1"}


def test_sorter_one_folder_per_study_id_with_master_sheet_metadata(pipeline: PipelineRun) -> None:
    assert sorted(pipeline.sort.item_metadata) == list(EXPECTED_FAILURES)
    for subject in pipeline.study.subjects:
        meta = pipeline.sort.item_metadata[subject.study_id]
        assert meta["internal_id"] == subject.internal_id
        assert meta["age"] == str(subject.age)
        assert meta["bmi"] == f"{subject.bmi:g}"
        folder = pipeline.sorted_dir / subject.study_id
        expected = {"accelerometer.csv", "ppg.csv", "polar_h10.csv", "labels.csv"}
        if subject.broken == "missing_ppg":
            expected.discard("ppg.csv")
        assert {p.name for p in folder.glob("*.csv")} == expected
        lake = pipeline.study.lake / subject.internal_id / "accelerometer.csv"
        assert (folder / "accelerometer.csv").read_bytes() == lake.read_bytes()


def test_sorter_rerun_is_idempotent(pipeline: PipelineRun) -> None:
    study = pipeline.study
    again = run_block(
        BLOCKS / "research-sorter",
        out_directory=pipeline.sorted_dir,
        venvs=pipeline.venvs,
        params={
            "lake-dir": str(study.lake),
            "portal-dir": str(study.portal),
            "master-sheet": str(study.master_sheet),
        },
    )
    assert again.item_metadata == pipeline.sort.item_metadata
    assert again.outputs == pipeline.sort.outputs
    assert sum("0 file(s) copied" in line for line in again.output_tail) == 5


@pytest.mark.parametrize("study_id", list(EXPECTED_FAILURES))
def test_checklist_fails_exactly_the_right_checks(pipeline: PipelineRun, study_id: str) -> None:
    result = pipeline.checklist[study_id]
    expected, _ = EXPECTED_FAILURES[study_id]
    assert result.update is not None and result.update.action == "replace-checks"
    assert failing(result.metadata) == expected
    assert result.metadata["ei_check"] == ("0" if expected else "1")
    assert result.metadata["study_id"] == study_id  # the sorter's metadata is kept
    checks = {k for k in result.metadata if k.startswith("ei_check_")}
    assert len(checks) >= (13 if study_id == "AMS_002" else 17)


@pytest.mark.parametrize("study_id", list(EXPECTED_FAILURES))
def test_combiner_checklist_and_outputs(pipeline: PipelineRun, study_id: str) -> None:
    result = pipeline.combiner[study_id]
    _, expected = EXPECTED_FAILURES[study_id]
    own = {k: v for k, v in result.update.metadata.items() if k.startswith("ei_check_")}
    assert {k for k, v in own.items() if v != "1"} == expected
    assert own["ei_check_accelerometer_file_present"] == "1"
    out = pipeline.combined_dir / study_id
    if study_id in GOOD:
        assert result.metadata["ei_check"] == "1"
        assert set(result.outputs) == {"combined.parquet", "hr.png"}
        assert float(result.metadata["hr_correlation"]) >= 0.9
    else:
        assert result.metadata["ei_check"] == "0"
        assert not (out / "combined.parquet").exists()
    if study_id == "AMS_003":
        assert float(result.metadata["hr_correlation"]) < 0.5
        assert (out / "hr.png").exists()  # the diagnostic plot is kept on failure
    if study_id == "AMS_002":
        assert "ei_check_hr_correlation_min" not in result.metadata


def test_combined_parquet_matches_the_contract_exactly(pipeline: PipelineRun) -> None:
    expected = [(c["name"], c["arrowType"], c["nullable"]) for c in CONTRACT["columns"]]
    schemas = []
    for study_id in GOOD:
        path = pipeline.combined_dir / study_id / "combined.parquet"
        schema = pq.read_schema(path)
        assert [(f.name, str(f.type), f.nullable) for f in schema] == expected
        kv = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        assert set(CONTRACT["keyValueMetadata"]) <= set(kv)
        assert kv["edgeloop.contract"] == f"{CONTRACT['name']}/{CONTRACT['version']}"
        item = json.loads(kv["edgeloop.item_metadata"])
        assert item["study_id"] == study_id
        assert item == pipeline.checklist[study_id].metadata  # what the combiner was given
        schemas.append(schema.remove_metadata())
    assert schemas[0].equals(schemas[1])


@pytest.mark.parametrize("study_id", GOOD)
def test_combined_rows_are_aligned_and_labelled(pipeline: PipelineRun, study_id: str) -> None:
    item = pipeline.sorted_dir / study_id
    table = pq.read_table(pipeline.combined_dir / study_id / "combined.parquet")
    ts = table.column("timestamp").cast("int64").to_numpy()
    assert np.all(np.diff(ts) > 0)
    labels = pacsv.read_csv(item / "labels.csv").to_pydict()
    assert ts[0] >= labels["start"][0] and ts[-1] <= labels["end"][-1]
    # every row's label is the one whose interval covers it
    row_labels = table.column("label").to_pylist()
    for start, end, name in zip(labels["start"], labels["end"], labels["label"], strict=True):
        inside = (ts >= start) & (ts < end)
        assert inside.any()
        assert {row_labels[i] for i in np.flatnonzero(inside)} == {name}
    assert table.column("label").null_count == 0
    # accelerometer values are the file's, unchanged (float32)
    acc = pacsv.read_csv(item / "accelerometer.csv").to_pydict()
    first = acc["timestamp"].index(int(ts[0]))
    np.testing.assert_allclose(
        table.column("accX").to_numpy()[:100],
        np.array(acc["x"][first : first + 100], dtype=np.float32),
        rtol=1e-6,
    )
    # the PPG-derived heart rate tracks the reference
    hr_ppg = table.column("hr_ppg").to_numpy(zero_copy_only=False)
    hr_ref = table.column("hr_ref").to_numpy()
    ok = np.isfinite(hr_ppg)
    assert ok.mean() > 0.95
    assert np.median(np.abs(hr_ppg[ok] - hr_ref[ok])) < 4.0


@pytest.mark.parametrize("study_id", GOOD)
def test_hr_png_is_a_real_png(pipeline: PipelineRun, study_id: str) -> None:
    from PIL import Image

    path = pipeline.combined_dir / study_id / "hr.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= 400 and image.size[1] >= 150
        assert len(set(image.convert("RGB").getdata())) > 20  # lines drawn, not blank


def test_combiner_ei_check_includes_earlier_checks(pipeline: PipelineRun) -> None:
    # AMS_004's combiner checks fail on their own; AMS_001's pass and so does its checklist
    assert pipeline.combiner["AMS_001"].metadata["ei_check_labels_contiguous"] == "1"
    assert pipeline.combiner["AMS_004"].metadata["ei_check_labels_contiguous"] == "0"


def test_parquet_rms_on_combined_parquet(pipeline: PipelineRun, tmp_path: Path) -> None:
    source = pipeline.combined_dir / "AMS_001" / "combined.parquet"
    result = run_block(
        BLOCKS / "parquet-rms", in_file=source, out_directory=tmp_path, venvs=pipeline.venvs
    )
    assert result.outputs == ("combined_rms.parquet",)
    rms = pq.read_table(tmp_path / "combined_rms.parquet").to_pylist()
    table = pq.read_table(source)
    labels = np.array(table.column("label").to_pylist())
    assert [r["label"] for r in rms] == sorted(set(labels))
    for row in rms:
        rows = labels == row["label"]
        assert row["samples"] == int(rows.sum())
        for axis in ("accX", "accY", "accZ"):
            values = table.column(axis).to_numpy()[rows].astype(np.float64)
            assert row[f"rms_{axis}"] == pytest.approx(np.sqrt(np.mean(values**2)), rel=1e-9)


def test_checklist_catches_each_kind_of_defect(pipeline: PipelineRun, tmp_path: Path) -> None:
    item = tmp_path / "item"
    shutil.copytree(pipeline.sorted_dir / "AMS_001", item)

    def edit(name: str, line_no: int, new: str) -> None:
        lines = (item / name).read_text().splitlines()
        lines[line_no] = new
        (item / name).write_text("\n".join(lines) + "\n")

    acc = (item / "accelerometer.csv").read_text().splitlines()
    acc[10], acc[11] = acc[11], acc[10]  # timestamps go backwards once
    (item / "accelerometer.csv").write_text("\n".join(acc) + "\n")
    ts = (item / "ppg.csv").read_text().splitlines()[5].split(",")[0]
    edit("ppg.csv", 5, f"{ts},")  # an empty PPG value
    ts = (item / "polar_h10.csv").read_text().splitlines()[7].split(",")[0]
    edit("polar_h10.csv", 7, f"{ts},250")  # implausible heart rate
    start, end, _ = (item / "labels.csv").read_text().splitlines()[1].split(",")
    edit("labels.csv", 1, f"{start},{end},swimming")  # not one of the study's labels

    result = run_block(
        BLOCKS / "research-checklist",
        in_directory=item,
        out_directory=tmp_path / "out",
        metadata={"ei_check_old": "0", "study_id": "X"},
        venvs=pipeline.venvs,
    )
    assert failing(result.metadata) == {
        "ei_check_accelerometer_timestamps",
        "ei_check_ppg_columns",
        "ei_check_polar_h10_ranges",
        "ei_check_labels_ranges",
    }
    assert "ei_check_old" not in result.metadata  # replace-checks dropped the stale check
    assert result.metadata["study_id"] == "X"
    assert any("expect_column_values_to_be_in_set(label)" in line for line in result.output_tail)
