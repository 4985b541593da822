"""Records of a project's models, deployments, explorer maps and versions, and the blob
helpers their artifacts go through (content-addressed: stored once, referenced by sha256).

A project is a catalog dataset (its name). Numbers (model 1, 2, ...; version 1, ...)
count per project. The current model is the most recently promoted one; the current
deployment the most recently published one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import datasets, deployments, explorer_maps, models, versions
from edgeloop.errors import TrainingError

log = logging.getLogger(__name__)

TRAIN_COMMAND = "edgeloop train {project} --impulse include/impulses/<impulse>.json"


@dataclass(frozen=True)
class RunKey:
    """The pipeline task that makes a record: a retried or cleared task of the same run
    finds what it already made (``find_run_record``) instead of making a second one."""

    pipeline_id: str
    run_id: str
    task_id: str

    def values(self) -> dict[str, str]:
        return {"pipeline_id": self.pipeline_id, "run_id": self.run_id, "task_id": self.task_id}

    def __str__(self) -> str:
        return f"pipeline {self.pipeline_id}, run {self.run_id}, task {self.task_id}"


def run_values(run: RunKey | None) -> dict[str, str]:
    """The columns a record made by ``run`` carries (none outside a pipeline)."""
    return run.values() if run is not None else {}


def find_run_record(
    catalog: Catalog, table: sa.Table, project: str, run: RunKey, *, made: str
) -> sa.Row | None:
    """The row of ``table`` that the pipeline task ``run`` already made in ``project`` (a
    retried or cleared task), or None. ``made`` says what it did, for the messages
    ("stored model", "built deployment")."""
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        row = conn.execute(
            sa.select(table).where(
                (table.c.pipeline_id == run.pipeline_id)
                & (table.c.run_id == run.run_id)
                & (table.c.task_id == run.task_id)
            )
        ).first()
    if row is None:
        return None
    if row.dataset_id != ds:
        raise TrainingError(
            f"{run} {made} {row.number} in another project than {project!r}: "
            "the pipeline's project changed during the run; trigger a new run"
        )
    log.info("%s: this task %s %s earlier (%s): reused", project, made, row.number, run)
    return row


# -- blobs -------------------------------------------------------------------------------


def put_bytes(blobs, data: bytes) -> str:
    """Store ``data`` in the blob store; return its sha256."""
    sha = hashlib.sha256(data).hexdigest()
    if blobs.exists(sha):
        return sha
    if hasattr(blobs, "open_temp"):
        temp, fh = blobs.open_temp()
        with fh:
            fh.write(data)
            fh.flush()
            blobs.put(temp, sha)
    else:
        temp = blobs.temp_file()
        temp.write_bytes(data)
        blobs.put(temp, sha)
    return sha


def put_file(blobs, path: str | Path) -> str:
    return put_bytes(blobs, Path(path).read_bytes())


def get_bytes(blobs, sha: str, *, what: str) -> bytes:
    """A blob's bytes, checked against its hash."""
    try:
        data = blobs.read_bytes(sha)
    except FileNotFoundError as exc:
        raise TrainingError(f"{what}: blob {sha} is missing from the blob store") from exc
    if hashlib.sha256(data).hexdigest() != sha:
        raise TrainingError(f"{what}: blob {sha} is corrupt (its content has another hash)")
    return data


# -- projects ----------------------------------------------------------------------------


def project_id(conn: sa.Connection, project: str) -> int:
    row = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == project)).first()
    if row is None:
        raise TrainingError(
            f"project {project!r} does not exist in the catalog (no items were ever imported "
            "into it): check the name with `edgeloop stats PROJECT`"
        )
    return int(row[0])


def next_number(conn: sa.Connection, table: sa.Table, dataset_id: int) -> int:
    top = conn.execute(
        sa.select(sa.func.max(table.c.number)).where(table.c.dataset_id == dataset_id)
    ).scalar()
    return int(top or 0) + 1


def _decode(row: sa.Row | None, json_cols: tuple[str, ...]) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row._mapping)
    for col in json_cols:
        if out.get(col) is not None:
            out[col] = json.loads(out[col])
    for key, value in list(out.items()):
        if hasattr(value, "isoformat"):
            out[key] = value.isoformat()
    return out


_MODEL_JSON = ("impulse", "labels", "metrics", "gate")


def _model_query(dataset_id: int):
    return sa.select(models).where(models.c.dataset_id == dataset_id)


def list_models(catalog: Catalog, project: str) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        rows = conn.execute(_model_query(ds).order_by(models.c.number)).all()
        current = _current_model_id(conn, ds)
    out = [_decode(r, _MODEL_JSON) for r in rows]
    for m in out:
        m["current"] = m["id"] == current
    return out  # type: ignore[return-value]


def _current_model_id(conn: sa.Connection, dataset_id: int) -> int | None:
    return conn.execute(
        sa.select(models.c.id)
        .where((models.c.dataset_id == dataset_id) & models.c.promoted_at.is_not(None))
        .order_by(models.c.promoted_at.desc(), models.c.number.desc())
        .limit(1)
    ).scalar()


def current_model(catalog: Catalog, project: str) -> dict[str, Any] | None:
    """The project's current model, or None if it was never trained."""
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        mid = _current_model_id(conn, ds)
        if mid is None:
            return None
        row = conn.execute(sa.select(models).where(models.c.id == mid)).first()
    return _decode(row, _MODEL_JSON)


def require_current_model(catalog: Catalog, project: str) -> dict[str, Any]:
    model = current_model(catalog, project)
    if model is None:
        raise TrainingError(
            f"project {project!r} has no trained model. You will need to have trained your "
            f"project at least once: run `{TRAIN_COMMAND.format(project=project)}`"
        )
    return model


def get_model(catalog: Catalog, project: str, number: int | None = None) -> dict[str, Any]:
    """Model ``number`` of the project, or its current model when ``number`` is None."""
    if number is None:
        return require_current_model(catalog, project)
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        row = conn.execute(_model_query(ds).where(models.c.number == number)).first()
        current = _current_model_id(conn, ds)
    model = _decode(row, _MODEL_JSON)
    if model is None:
        raise TrainingError(f"project {project!r} has no model {number}")
    model["current"] = model["id"] == current
    return model


def model_by_id(catalog: Catalog, model_id: int) -> dict[str, Any]:
    with catalog.engine.connect() as conn:
        row = conn.execute(sa.select(models).where(models.c.id == model_id)).first()
    model = _decode(row, _MODEL_JSON)
    if model is None:
        raise TrainingError(f"no model with id {model_id}")
    return model


# -- deployments -------------------------------------------------------------------------


def list_deployments(catalog: Catalog, project: str) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        rows = conn.execute(
            sa.select(deployments, models.c.number.label("model_number"))
            .join(models, models.c.id == deployments.c.model_id)
            .where(deployments.c.dataset_id == ds)
            .order_by(deployments.c.number)
        ).all()
    out = [_decode(r, ("summary",)) for r in rows]
    published = [d for d in out if d["published_at"]]
    current = max(published, key=lambda d: (d["published_at"], d["number"])) if published else None
    for d in out:
        d["current"] = current is not None and d["id"] == current["id"]
    return out  # type: ignore[return-value]


def get_deployment(catalog: Catalog, project: str, number: int) -> dict[str, Any]:
    for d in list_deployments(catalog, project):
        if d["number"] == number:
            return d
    raise TrainingError(f"project {project!r} has no deployment {number}")


# -- explorer maps / versions -------------------------------------------------------------


def latest_map(conn: sa.Connection, dataset_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(explorer_maps)
        .where(explorer_maps.c.dataset_id == dataset_id)
        .order_by(explorer_maps.c.number.desc())
        .limit(1)
    ).first()
    return _decode(row, ("stats",))


def list_versions(catalog: Catalog, project: str) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        ds = project_id(conn, project)
        rows = conn.execute(
            sa.select(versions, models.c.number.label("model_number"))
            .join(models, models.c.id == versions.c.model_id, isouter=True)
            .where(versions.c.dataset_id == ds)
            .order_by(versions.c.number)
        ).all()
    return [_decode(r, ("summary",)) for r in rows]  # type: ignore[misc]
