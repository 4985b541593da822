"""Every shipped pipeline becomes a DAG with tags, owner, retries; parsing stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "pandas", "great_expectations", "boto3", "botocore", "keras")


def _dagbag(pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("EDGELOOP_PIPELINES_DIR", str(pipelines_dir))
    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_config_becomes_a_sound_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _dagbag(REPO / "include" / "pipelines", monkeypatch)
    assert bag.import_errors == {}
    configs = sorted(p.stem for p in (REPO / "include" / "pipelines").glob("*.json"))
    assert configs and sorted(bag.dag_ids) == configs
    for dag in bag.dags.values():
        assert "edgeloop" in dag.tags
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert dag.doc_md
        assert list(dag.task_dict)[:3] == ["verify_source", "sync", "label"]
        assert dag.task_dict["summary"].upstream_task_ids == {"label"}
        for task in dag.tasks:
            assert task.owner == "edgeloop"
        sync = dag.task_dict["sync"]
        assert sync.retries >= 1 and sync.retry_exponential_backoff
        assert dag.task_dict["verify_source"].retries == 0  # wrong credentials fail fast


def test_demo_schedule_from_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _dagbag(REPO / "include" / "pipelines", monkeypatch).dags["demo"]
    assert dag.timetable.delta == timedelta(days=1)


def test_bad_config_shows_its_error_and_hides_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = {
        "name": "s",
        "builtinTransformationBlock": {"type": "s3-to-project", "path": "s3://bkt/x/"},
    }
    (tmp_path / "good.json").write_text(json.dumps([step]))
    (tmp_path / "broken.json").write_text(
        json.dumps(
            {
                "name": "b",
                "steps": [
                    {
                        **step,
                        "builtinTransformationBlock": {
                            **step["builtinTransformationBlock"],
                            "category": "sometimes",
                        },
                    }
                ],
            }
        )
    )
    bag = _dagbag(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["broken", "good"]
    broken = bag.dags["broken"]
    assert "invalid-config" in broken.tags
    assert broken.description.startswith("INVALID CONFIG:")
    assert broken.dag_display_name == "broken (INVALID CONFIG: see Docs)"
    assert "$.steps[0].builtinTransformationBlock.category" in broken.doc_md
    assert "sometimes" in broken.doc_md
    assert type(broken.timetable).__name__ == "NullTimetable"


def test_parsing_imports_no_heavy_library_and_does_no_network_io() -> None:
    code = (
        "import socket, sys, runpy\n"
        "def no_net(*a, **k): raise RuntimeError('network I/O at parse time')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        f"runpy.run_path({str(REPO / 'dags' / 'edgeloop_pipelines.py')!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "EDGELOOP_PIPELINES_DIR": str(REPO / "include" / "pipelines")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
