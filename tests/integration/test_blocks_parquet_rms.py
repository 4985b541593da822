"""parquet-rms (the seed's tutorial block) on a gestures-style Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgeloop.blocks.runner import BlockFailed, run_block

BLOCK = Path(__file__).resolve().parents[2] / "include" / "blocks" / "parquet-rms"


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Block venvs (and their bytecode cache) shared by every block test of the session."""
    path = tmp_path_factory.getbasetemp() / "edgeloop-block-venvs"
    path.mkdir(exist_ok=True)
    return path


def test_rms_per_label(tmp_path: Path, venvs: Path) -> None:
    src = tmp_path / "gestures.parquet"
    pq.write_table(
        pa.table(
            {
                "sample_name": ["a"] * 5,
                "accX": [3.0, -3.0, 1.0, 1.0, 1.0],
                "accY": [4.0, 4.0, 0.0, 0.0, 2.0],
                "accZ": [0.0, 0.0, -2.0, 2.0, 2.0],
                "label": ["wave", "wave", "idle", "idle", "idle"],
            }
        ),
        src,
    )
    result = run_block(BLOCK, in_file=src, out_directory=tmp_path / "out", venvs=venvs)
    rows = {
        r["label"]: r for r in pq.read_table(tmp_path / "out" / "gestures_rms.parquet").to_pylist()
    }
    assert rows["wave"]["rms_accX"] == pytest.approx(3.0)
    assert rows["wave"]["rms_accY"] == pytest.approx(4.0)
    assert rows["wave"]["samples"] == 2
    assert rows["idle"]["rms_accY"] == pytest.approx(np.sqrt(4 / 3))
    assert rows["idle"]["rms_accZ"] == pytest.approx(2.0)
    assert result.metadata == {}


def test_missing_column_fails_with_reason(tmp_path: Path, venvs: Path) -> None:
    src = tmp_path / "nolabel.parquet"
    pq.write_table(pa.table({"accX": [1.0], "accY": [1.0], "accZ": [1.0]}), src)
    with pytest.raises(BlockFailed) as info:
        run_block(BLOCK, in_file=src, out_directory=tmp_path / "out", venvs=venvs)
    assert info.value.exit_code == 1
    assert "missing column(s) ['label']" in str(info.value)
