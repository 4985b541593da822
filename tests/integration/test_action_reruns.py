"""Project-action tasks are idempotent per run: running a task twice for one Airflow run id
(a retry, or "clear") leaves one model, one explorer map, one deployment, one version; the
second try returns what the first made (``reused``). Another run id makes new records.

The operators run without Airflow's scheduler: ``execute`` with a context holding the run
id and a task instance that keeps XCom in a dict. One small digits project, trained once
(2 epochs); the tests run in file order on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgeloop_dev.devenv import digit_objects

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROJECT = "reruns"
PIPELINE = "reruns-pipeline"
RUN = "manual__2026-01-01T00:00:00+00:00"


class FakeTI:
    """The task instance's XCom, kept in a dict shared by the tasks of one run."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[f"push:{key}"] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids)


class Run:
    """The tasks of one pipeline run: ``execute`` each, keep its return value as XCom."""

    def __init__(self, run_id: str, config: Path) -> None:
        self.run_id, self.config, self.xcoms = run_id, config, {}

    def op(self, cls, task_id: str, **kwargs):
        return cls(
            task_id=task_id,
            project=PROJECT,
            pipeline_id=PIPELINE,
            config_file=str(self.config),
            **kwargs,
        )

    def execute(self, op) -> dict[str, Any]:
        out = op.execute({"ti": FakeTI(self.xcoms), "run_id": self.run_id})
        self.xcoms[op.task_id] = out
        return out


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from edgeloop.catalog.store import Catalog, upgrade
    from edgeloop.settings import get_settings
    from edgeloop.storage.blobs import BlobStore
    from edgeloop.training.samples import add_objects
    from edgeloop.training.train import train

    home = tmp_path_factory.mktemp("reruns") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGELOOP_HOME", str(home))
        for key in ("EDGELOOP_CATALOG_URL", "EDGELOOP_BLOB_ROOT", "EDGELOOP_BLOB_CONN_ID"):
            mp.delenv(key, raising=False)
        upgrade(get_settings().catalog_url)
        catalog, blobs = Catalog.from_settings(), BlobStore.from_settings()
        add_objects(PROJECT, digit_objects(per_label=8, unlabeled=4), catalog=catalog, blobs=blobs)
        impulse = json.loads((REPO / "include" / "impulses" / "digits.json").read_text())
        impulse["learning"]["epochs"] = 2
        assert train(PROJECT, impulse, catalog=catalog, blobs=blobs)["model"] == 1
        yield catalog


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    config = tmp_path_factory.mktemp("config") / "reruns.json"
    config.write_text(json.dumps({"id": PIPELINE, "project": PROJECT, "steps": []}))
    return Run(RUN, config)


def _rows(catalog, table) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def test_explorer_twice_in_one_run_makes_one_map(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import explorer_maps, explorer_points
    from edgeloop.operators.actions import ExplorerOperator

    op = run.op(ExplorerOperator, "actions.refresh_data_explorer")
    first = run.execute(op)
    points = len(_rows(catalog, explorer_points))
    again = run.execute(op)
    assert (first["reused"], again["reused"]) == (False, True)
    assert {k: v for k, v in again.items() if k != "reused"} == {
        k: v for k, v in first.items() if k != "reused"
    }
    maps = _rows(catalog, explorer_maps)
    assert [(m["number"], m["pipeline_id"], m["run_id"]) for m in maps] == [(1, PIPELINE, RUN)]
    assert maps[0]["task_id"] == "actions.refresh_data_explorer"
    assert len(_rows(catalog, explorer_points)) == points


def test_retrain_twice_in_one_run_stores_one_model(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import models
    from edgeloop.operators.actions import RetrainOperator
    from edgeloop.training import registry

    op = run.op(RetrainOperator, "actions.retrain_model")
    first = run.execute(op)
    assert first["model"] == 2 and first["promoted"] and not first["reused"]
    again = run.execute(op)  # model 2 is current now: a new retrain would gate against it
    assert again["reused"] and again["model"] == 2 and again["promoted"]
    assert again["gate"] == first["gate"] and again["previous_model"] == 1
    assert again["test_accuracy"] == first["test_accuracy"]
    rows = _rows(catalog, models)
    assert [(m["number"], m["run_id"]) for m in rows] == [(1, None), (2, RUN)]
    assert registry.current_model(catalog, PROJECT)["number"] == 2


def test_build_binary_twice_in_one_run_builds_one_deployment(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import deployments
    from edgeloop.operators.actions import DeployOperator

    op = run.op(DeployOperator, "actions.build_binary", retrain_task_id="actions.retrain_model")
    first = run.execute(op)
    again = run.execute(op)
    assert (first["reused"], again["reused"]) == (False, True)
    assert (again["deployment"], again["model"], again["zip_sha"]) == (1, 2, first["zip_sha"])
    assert again["published"] and again["verification"] == first["verification"]
    rows = _rows(catalog, deployments)
    assert [(d["number"], d["run_id"], d["task_id"]) for d in rows] == [
        (1, RUN, "actions.build_binary")
    ]


def test_create_version_twice_in_one_run_creates_one_version(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import versions
    from edgeloop.operators.actions import VersionOperator

    op = run.op(VersionOperator, "actions.create_version", deploy_task_ids=["actions.build_binary"])
    first = run.execute(op)
    again = run.execute(op)
    assert (first["reused"], again["reused"]) == (False, True)
    assert again["version"] == first["version"] == 1
    assert again["manifest_sha"] == first["manifest_sha"] and again["deployments"] == [1]
    rows = _rows(catalog, versions)
    assert [(v["number"], v["pipeline_id"], v["run_id"]) for v in rows] == [(1, PIPELINE, RUN)]


def test_publish_twice_keeps_the_publication_date(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import deployments
    from edgeloop.operators.actions import PublishDeploymentOperator

    op = run.op(PublishDeploymentOperator, "actions.publish", deploy_task_id="actions.build_binary")
    before = _rows(catalog, deployments)[0]["published_at"]
    run.execute(op)
    run.execute(op)
    assert _rows(catalog, deployments)[0]["published_at"] == before


def test_another_run_makes_new_records(catalog, run: Run) -> None:
    from edgeloop.catalog.tables import explorer_maps, models, versions
    from edgeloop.operators.actions import ExplorerOperator, RetrainOperator, VersionOperator

    other = Run("manual__2026-01-02T00:00:00+00:00", run.config)
    assert other.execute(other.op(ExplorerOperator, "actions.refresh_data_explorer"))["map"] == 2
    assert other.execute(other.op(RetrainOperator, "actions.retrain_model"))["model"] == 3
    assert other.execute(other.op(VersionOperator, "actions.create_version"))["version"] == 2
    assert [len(_rows(catalog, t)) for t in (explorer_maps, models, versions)] == [2, 3, 2]
