"""Deployments: the verified C++ library of a project's model (``deploy.build_library``),
with representative data from its training set, stored as blobs (zip + report) and
recorded. A deployment is published (the project's current one) at once, or later with
``publish_deployment`` (e.g. after a human approval).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import deployments, now
from edgeloop.errors import DeployError, TrainingError
from edgeloop.training import registry
from edgeloop.training.features import FeatureSet

log = logging.getLogger(__name__)

MAX_CALIBRATION = 500
SUMMARY_KEYS = (
    "model_type",
    "accuracy",
    "arena_bytes",
    "tflm_arena_bytes",
    "weights_bytes",
    "code_bytes",
    "latency_us",
    "verification",
)


def representative_npz(model: dict[str, Any], fs: FeatureSet) -> bytes:
    """x, y from the model's training rows (calibration), x_test, y_test from its testing
    rows with labels the model knows (verification and accuracy)."""
    labels = model["labels"]
    index = {n: i for i, n in enumerate(labels)}
    train = fs.category("training")
    test = fs.category("testing")
    test = test.select(np.isin(test.labels, labels))
    if len(train) == 0:
        raise TrainingError("the model's features hold no training rows for calibration")
    pick = np.random.default_rng(0).permutation(len(train))[:MAX_CALIBRATION]
    pick.sort()
    arrays: dict[str, np.ndarray] = {
        "x": train.x[pick],
        "y": np.asarray([index.get(n, -1) for n in train.labels[pick]], np.int64),
    }
    if len(test):
        arrays["x_test"] = test.x
        arrays["y_test"] = np.asarray([index[n] for n in test.labels], np.int64)
    if (arrays["y"] < 0).any():  # rows relabeled to a label the model lacks: drop y
        arrays.pop("y")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def build_deployment(
    project: str,
    *,
    model_type: str = "int8",
    model: int | None = None,
    publish: bool = True,
    run: registry.RunKey | None = None,
    catalog: Catalog | None = None,
    blobs=None,
) -> dict[str, Any]:
    """Build the library of the current model (or model number ``model``); store the zip
    and report; publish it as the current deployment unless ``publish`` is False.

    With ``run`` (a pipeline task), a deployment that task already built is returned
    instead (``reused``; published now if ``publish`` and it was not): a retried task
    never builds a second deployment for one run."""
    from edgeloop.deploy.build import MODEL_TYPES, build_library
    from edgeloop.training.train import _context, blob_location

    if model_type not in MODEL_TYPES:
        raise TrainingError(
            f"buildBinaryModelType must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}"
        )
    catalog, blobs = _context(catalog, blobs)
    if run is not None:
        done = run_deployment(catalog, blobs, project, run, publish=publish)
        if done is not None:
            if model is not None and done["model"] != model:
                raise TrainingError(
                    f"{run} built deployment {done['deployment']} of model {done['model']}, "
                    f"not of model {model}: trigger a new run"
                )
            return done
    mdl = registry.get_model(catalog, project, model)
    fs = FeatureSet.from_npz_bytes(
        registry.get_bytes(blobs, mdl["features_sha"], what=f"model {mdl['number']} features")
    )
    with tempfile.TemporaryDirectory(prefix="edgeloop-deployment-") as tmp:
        work = Path(tmp)
        (work / "model.keras").write_bytes(
            registry.get_bytes(blobs, mdl["model_sha"], what=f"model {mdl['number']}")
        )
        (work / "representative.npz").write_bytes(representative_npz(mdl, fs))
        out = work / "library.zip"
        try:
            report = build_library(
                work / "model.keras",
                work / "representative.npz",
                list(mdl["labels"]),
                model_type,
                out,
                report_path=work / "report.json",
            )
        except DeployError as exc:
            raise TrainingError(
                f"project {project!r} model {mdl['number']}: the {model_type} library build "
                f"failed: {exc}"
            ) from exc
        report["model"] = f"{project} model {mdl['number']}"
        report["zip"] = "library.zip"
        zip_sha = registry.put_file(blobs, out)
        report_sha = registry.put_bytes(
            blobs, json.dumps(report, sort_keys=True, indent=1).encode("utf-8")
        )
    summary = {k: report.get(k) for k in SUMMARY_KEYS}
    ts = now()
    with catalog.begin() as conn:
        ds = registry.project_id(conn, project)
        number = registry.next_number(conn, deployments, ds)
        conn.execute(
            deployments.insert().values(
                dataset_id=ds,
                number=number,
                model_id=mdl["id"],
                model_type=model_type,
                zip_sha=zip_sha,
                report_sha=report_sha,
                summary=json.dumps(summary, sort_keys=True),
                published_at=ts if publish else None,
                created_at=ts,
                **registry.run_values(run),
            )
        )
    log.info(
        "%s: deployment %s (%s, model %s) built%s: %s",
        project,
        number,
        model_type,
        mdl["number"],
        " and published" if publish else "",
        json.dumps(summary["accuracy"]),
    )
    return {
        "project": project,
        "deployment": number,
        "model": mdl["number"],
        "published": publish,
        "zip": blob_location(blobs, zip_sha),
        "zip_sha": zip_sha,
        "report_sha": report_sha,
        **summary,
        "reused": False,
    }


def run_deployment(
    catalog: Catalog, blobs, project: str, run: registry.RunKey, *, publish: bool
) -> dict[str, Any] | None:
    """The deployment the pipeline task ``run`` already built, as ``build_deployment``
    returns it with ``reused`` (published now if ``publish`` and it was not); None if it
    built none."""
    from edgeloop.training.train import blob_location

    row = registry.find_run_record(catalog, deployments, project, run, made="built deployment")
    if row is None:
        return None
    dep = registry.get_deployment(catalog, project, row.number)
    if publish and not dep["published_at"]:
        dep = publish_deployment(project, row.number, catalog=catalog)
    return {
        "project": project,
        "deployment": dep["number"],
        "model": dep["model_number"],
        "published": dep["published_at"] is not None,
        "zip": blob_location(blobs, dep["zip_sha"]),
        "zip_sha": dep["zip_sha"],
        "report_sha": dep["report_sha"],
        **{k: dep["summary"].get(k) for k in SUMMARY_KEYS},
        "reused": True,
    }


def publish_deployment(
    project: str, number: int, *, catalog: Catalog | None = None
) -> dict[str, Any]:
    """Make deployment ``number`` the project's current one (e.g. once approved)."""
    catalog = catalog or Catalog.from_settings()
    dep = registry.get_deployment(catalog, project, number)
    with catalog.begin() as conn:
        conn.execute(
            deployments.update().where(deployments.c.id == dep["id"]).values(published_at=now())
        )
    log.info("%s: deployment %s published", project, number)
    return registry.get_deployment(catalog, project, number)


def export_deployment(
    project: str, number: int, to: str | Path, *, catalog: Catalog | None = None, blobs=None
) -> Path:
    """Write deployment ``number``'s zip to ``to`` (checked against its hash)."""
    from edgeloop.training.train import _context

    catalog, blobs = _context(catalog, blobs)
    dep = registry.get_deployment(catalog, project, number)
    to = Path(to)
    to.write_bytes(registry.get_bytes(blobs, dep["zip_sha"], what=f"deployment {number} zip"))
    return to
