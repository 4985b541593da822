"""research-combiner's functions on small hand-made inputs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports scipy.signal and matplotlib (several seconds cold)

COMBINE = Path(__file__).resolve().parents[2] / "include" / "blocks" / "research-combiner"


@pytest.fixture(scope="module")
def combine():
    spec = importlib.util.spec_from_file_location("research_combine_t2", COMBINE / "combine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bpm", [48, 75, 150, 190])
def test_heart_rate_from_a_clean_pulse(combine, bpm: int) -> None:
    t = np.arange(0, 120_000, 40, dtype=np.int64)  # 25 Hz, 2 minutes
    ppg = 2000 + 300 * np.sin(2 * np.pi * bpm / 60 * t / 1000)
    _, rate = combine.heart_rate_from_ppg(t, ppg)
    assert np.median(rate) == pytest.approx(bpm, abs=1.5)


def test_flat_signal_has_no_beats(combine) -> None:
    t = np.arange(0, 60_000, 40, dtype=np.int64)
    beat_t, rate = combine.heart_rate_from_ppg(t, np.full(t.shape, 2000.0))
    assert beat_t.size == 0 and rate.size == 0


def test_interp_with_gaps(combine) -> None:
    xp = np.array([0.0, 1000, 2000, 10_000, 11_000])
    fp = np.array([60.0, 61, 62, 70, 71])
    y = combine.interp_with_gaps(np.array([500.0, 2000, 6000, 10_500, 20_000]), xp, fp, 3000)
    assert y[0] == pytest.approx(60.5) and y[1] == 62 and y[3] == pytest.approx(70.5)
    assert math.isnan(y[2]) and math.isnan(y[4])
    assert np.isnan(combine.interp_with_gaps(np.array([1.0]), np.empty(0), np.empty(0), 1)).all()


def test_pearson_needs_data(combine) -> None:
    assert math.isnan(combine.pearson(np.arange(5.0), np.arange(5.0)))
    assert math.isnan(combine.pearson(np.ones(20), np.arange(20.0)))
    assert combine.pearson(np.arange(20.0), 2 * np.arange(20.0)) == pytest.approx(1.0)


def write_item(folder: Path, *, labels_end_ms: int, with_accel: bool = True) -> None:
    folder.mkdir(parents=True)
    t0 = 1_660_000_000_000
    acc_t = t0 + np.arange(0, 60_000, 20)
    ppg_t = t0 + np.arange(0, 60_000, 40)
    hr_t = t0 + np.arange(0, 60_000, 1000)
    bpm = 70 + 20 * np.sin(np.arange(hr_t.size) / 10)
    phase = 2 * np.pi * np.cumsum(np.interp(ppg_t, hr_t, bpm) / 60) / 25
    if with_accel:
        rows = "\n".join(f"{t},0.1,0.2,0.97" for t in acc_t)
        (folder / "accelerometer.csv").write_text("timestamp,x,y,z\n" + rows + "\n")
    rows = "\n".join(f"{t},{2000 + 300 * np.sin(p):.0f}" for t, p in zip(ppg_t, phase, strict=True))
    (folder / "ppg.csv").write_text("timestamp,ppg\n" + rows + "\n")
    rows = "\n".join(f"{t},{b:.0f}" for t, b in zip(hr_t, bpm, strict=True))
    (folder / "polar_h10.csv").write_text("timestamp,hr\n" + rows + "\n")
    (folder / "labels.csv").write_text(
        f"start,end,label\n{t0},{t0 + 30_000},sitting\n{t0 + 30_000},{t0 + labels_end_ms},walking\n"
    )


def test_combine_item_good_and_uncovered(combine, tmp_path: Path) -> None:
    write_item(tmp_path / "good", labels_end_ms=60_000)
    (tmp_path / "o1").mkdir()
    res = combine.combine_item(tmp_path / "good", tmp_path / "o1", {"study_id": "X"})
    assert res.passed, res
    assert res.outputs == ["combined.parquet", "hr.png"]
    assert res.rows > 2900

    write_item(tmp_path / "short", labels_end_ms=50_000)  # labels stop 10 s early
    (tmp_path / "o2").mkdir()
    res = combine.combine_item(tmp_path / "short", tmp_path / "o2", {})
    assert res.checks["ei_check_labels_cover_recording"] is False
    assert not (tmp_path / "o2" / "combined.parquet").exists()
    assert (tmp_path / "o2" / "hr.png").exists()
    (tmp_path / "o3").mkdir()
    res = combine.combine_item(tmp_path / "short", tmp_path / "o3", {}, plot_on_failure=False)
    assert res.outputs == []


def test_missing_accelerometer(combine, tmp_path: Path) -> None:
    write_item(tmp_path / "item", labels_end_ms=60_000, with_accel=False)
    (tmp_path / "o").mkdir()
    res = combine.combine_item(tmp_path / "item", tmp_path / "o", {})
    failing = {k for k, v in res.checks.items() if not v}
    assert failing == {"ei_check_accelerometer_file_present"}
    assert "ei_check_labels_cover_recording" not in res.checks
    assert res.checks["ei_check_hr_correlation_min"] is True


def test_unreadable_file_counts_as_absent(combine, tmp_path: Path) -> None:
    write_item(tmp_path / "item", labels_end_ms=60_000)
    (tmp_path / "item" / "polar_h10.csv").write_text("timestamp,hr\n1,fast\n")
    (tmp_path / "o").mkdir()
    res = combine.combine_item(tmp_path / "item", tmp_path / "o", {})
    assert res.checks["ei_check_polar_h10_file_present"] is False
    assert any("polar_h10.csv: unreadable" in n for n in res.notes)


def test_overall_check_includes_earlier_checks(combine) -> None:
    res = combine.CombineResult(checks={"ei_check_ppg_file_present": True}, correlation=0.8)
    assert combine.item_checklist(res, {"ei_check_labels_contiguous": "1"})["ei_check"] == "1"
    meta = combine.item_checklist(res, {"ei_check_labels_contiguous": "0", "age": "3"})
    assert meta == {"ei_check_ppg_file_present": "1", "ei_check": "0", "hr_correlation": "0.8000"}
    json.dumps(meta)


def test_empty_file_and_unsorted_rows(combine, tmp_path: Path) -> None:
    write_item(tmp_path / "item", labels_end_ms=60_000)
    acc = (tmp_path / "item" / "accelerometer.csv").read_text().splitlines()
    acc[100], acc[101] = acc[101], acc[100]
    (tmp_path / "item" / "accelerometer.csv").write_text("\n".join(acc) + "\n")
    (tmp_path / "o").mkdir()
    res = combine.combine_item(tmp_path / "item", tmp_path / "o", {})
    assert res.passed  # rows are put in time order before aligning
    (tmp_path / "item" / "labels.csv").write_text("start,end,label\n")
    res = combine.combine_item(tmp_path / "item", tmp_path / "o", {})
    assert res.checks["ei_check_labels_file_present"] is False
    assert any("no rows" in n for n in res.notes)
