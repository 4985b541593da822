"""The synthetic health study: layout, integer-ms timestamps, physiology, broken subjects."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from edgeloop.research.sample_data import generate_health_study

pytestmark = pytest.mark.slow  # imports scipy.signal and matplotlib (several seconds cold)

COMBINE = Path(__file__).resolve().parents[2] / "include" / "blocks" / "research-combiner"


def load_combine():
    spec = importlib.util.spec_from_file_location("research_combine_t1", COMBINE / "combine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return generate_health_study(tmp_path_factory.mktemp("study"), 5, minutes=4)


def read(path: Path) -> pa.Table:
    return pacsv.read_csv(path)


def test_layout_and_master_sheet(study) -> None:
    sheet = read(study.master_sheet)
    assert sheet.column_names == [
        "study_id",
        "internal_id",
        "age",
        "sex",
        "height_cm",
        "weight_kg",
        "bmi",
        "dominant_hand",
    ]
    assert sheet.column("study_id").to_pylist() == [f"AMS_00{i}" for i in range(1, 6)]
    ids = sheet.column("internal_id").to_pylist()
    assert len(set(ids)) == 5 and all(len(i) == 6 and i.isalnum() for i in ids)
    for s in study.subjects:
        assert (study.lake / s.internal_id / "accelerometer.csv").exists()
        assert (study.portal / f"{s.study_id}_polar_h10.csv").exists()
        assert (study.portal / f"{s.study_id}_labels.csv").exists()
        assert (study.lake / s.internal_id / "ppg.csv").exists() == (s.broken != "missing_ppg")
    manifest = json.loads((study.root / "study.json").read_text())
    assert [s["broken"] for s in manifest["subjects"]] == [
        "",
        "missing_ppg",
        "unrelated_ppg",
        "labels_gap",
        "",
    ]


def test_timestamps_are_integer_milliseconds(study) -> None:
    s = study.subjects[0]
    for path, col, step in [
        (study.lake / s.internal_id / "accelerometer.csv", "timestamp", 20),
        (study.lake / s.internal_id / "ppg.csv", "timestamp", 40),
        (study.portal / f"{s.study_id}_polar_h10.csv", "timestamp", 1000),
    ]:
        table = read(path)
        assert table.schema.field(col).type == pa.int64()
        ts = table.column(col).to_numpy()
        assert ts[0] > 1_600_000_000_000  # epoch milliseconds (2020+)
        assert np.all(np.abs(np.diff(ts) - step) <= 1)
    labels = read(study.portal / f"{s.study_id}_labels.csv")
    assert labels.schema.field("start").type == pa.int64()
    assert set(labels.column("label").to_pylist()) <= {"sitting", "walking", "running", "biking"}


def test_physiology(study) -> None:
    s = study.subjects[0]
    hr = read(study.portal / f"{s.study_id}_polar_h10.csv").column("hr").to_numpy()
    assert hr.min() >= 40 and hr.max() <= 200 and hr.max() - hr.min() > 30
    acc = read(study.lake / s.internal_id / "accelerometer.csv")
    mag = np.sqrt(sum(acc.column(a).to_numpy() ** 2 for a in "xyz"))
    assert 0.9 < np.median(mag) < 1.1  # gravity


def test_labels_contiguous_except_the_gap_subject(study) -> None:
    for s in study.subjects:
        labels = read(study.portal / f"{s.study_id}_labels.csv")
        gaps = labels.column("start").to_numpy()[1:] - labels.column("end").to_numpy()[:-1]
        if s.broken == "labels_gap":
            assert gaps.max() >= 10_000 and (gaps > 0).sum() == 1
        else:
            assert np.all(gaps == 0)


def test_ppg_pulse_follows_the_reference_hr_unless_unrelated(study) -> None:
    combine = load_combine()
    for s in study.subjects:
        if s.broken == "missing_ppg":
            continue
        ppg = read(study.lake / s.internal_id / "ppg.csv")
        polar = read(study.portal / f"{s.study_id}_polar_h10.csv")
        beat_t, bpm = combine.heart_rate_from_ppg(
            ppg.column("timestamp").to_numpy(), ppg.column("ppg").to_numpy().astype(float)
        )
        ref = np.interp(beat_t, polar.column("timestamp").to_numpy(), polar.column("hr").to_numpy())
        r = np.corrcoef(bpm, ref)[0, 1]
        if s.broken == "unrelated_ppg":
            assert r < 0.5
        else:
            assert r > 0.9
            assert np.median(np.abs(bpm - ref)) < 4


def test_deterministic(tmp_path: Path) -> None:
    a = generate_health_study(tmp_path / "a", 1, minutes=1)
    b = generate_health_study(tmp_path / "b", 1, minutes=1)
    sid = a.subjects[0].internal_id
    assert (a.lake / sid / "ppg.csv").read_bytes() == (b.lake / sid / "ppg.csv").read_bytes()
    c = generate_health_study(tmp_path / "c", 1, minutes=1, seed=7)
    assert c.subjects[0].internal_id != sid


def test_cli_writes_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgeloop.research import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "sample-data",
            "health-study",
            "--subjects",
            "4",
            "--minutes",
            "1",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "AMS_002" in out and "missing_ppg" in out
    assert (tmp_path / "s" / "master_sheet.csv").exists()
