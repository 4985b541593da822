"""Immutable versions of a project: a manifest (JSON, stored as a blob) of the dataset
(every item's name, label, category and file hashes), the pipeline config, the impulse,
the model's artifacts and metrics, and the deployments built in the run. Blobs are
referenced by hash, never copied; ``restore_version`` writes them out, each checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import explorer_maps, now, versions
from edgeloop.errors import TrainingError
from edgeloop.training import registry

log = logging.getLogger(__name__)

FORMAT = "edgeloop-version/1"
UNLABELED = "unlabeled"


def _config_document(config: dict[str, Any] | list[Any] | str | Path | None) -> Any:
    if config is None or isinstance(config, dict | list):
        return config
    path = Path(config)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"pipeline config {path}: cannot be read as JSON ({exc})") from exc


def _model_entry(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": model["number"],
        "kind": model["kind"],
        "promoted": model["promoted_at"] is not None,
        "impulse": model["impulse"],
        "labels": model["labels"],
        "metrics": model["metrics"],
        "gate": model["gate"],
        "artifacts": {
            "model.keras": model["model_sha"],
            "features.npz": model["features_sha"],
            "confusion.png": model["confusion_sha"],
            **({"anomaly.npz": model["anomaly_sha"]} if model["anomaly_sha"] else {}),
        },
    }


def create_version(
    project: str,
    *,
    config: dict[str, Any] | list[Any] | str | Path | None = None,
    model: int | None = None,
    deployment_numbers: list[int] | None = None,
    run_id: str | None = None,
    run: registry.RunKey | None = None,
    description: str | None = None,
    catalog: Catalog | None = None,
    blobs=None,
) -> dict[str, Any]:
    """Snapshot the project now: its live items, ``config`` (a document or a file), the
    current model (or model number ``model``), the latest explorer map and the given
    deployments. Returns the version's number and summary.

    With ``run`` (a pipeline task; its run id is the version's ``run_id``), a version that
    task already created is returned instead (``reused``): one version per task and run."""
    from edgeloop.training.train import _context

    catalog, blobs = _context(catalog, blobs)
    if run is not None:
        if run_id is not None and run_id != run.run_id:
            raise TrainingError(f"run_id {run_id!r} differs from the task's run ({run})")
        run_id = run.run_id
        if (done := run_version(catalog, project, run)) is not None:
            return done
    config_doc = _config_document(config)
    items = catalog.list_items(project)
    mdl = (
        registry.get_model(catalog, project, model)
        if model is not None
        else registry.current_model(catalog, project)
    )
    deps = [registry.get_deployment(catalog, project, n) for n in deployment_numbers or []]
    manifest_items = [
        {
            "name": r["name"],
            "label": r["label"],
            "category": r["category"],
            "sha256": r["sha256"],
            "files": sorted(
                ({"name": f["name"], "sha256": f["sha256"], "size": f["size"]} for f in r["files"]),
                key=lambda f: f["name"],
            ),
        }
        for r in sorted(items, key=lambda r: r["name"])
    ]
    counts = {
        "items": len(manifest_items),
        "training": sum(1 for i in manifest_items if i["label"] and i["category"] == "training"),
        "testing": sum(1 for i in manifest_items if i["label"] and i["category"] == "testing"),
        "unlabeled": sum(1 for i in manifest_items if not i["label"]),
        "labels": len({i["label"] for i in manifest_items if i["label"]}),
    }
    with catalog.begin() as conn:
        ds = registry.project_id(conn, project)
        number = registry.next_number(conn, versions, ds)
        explorer = conn.execute(
            sa.select(explorer_maps.c.number, explorer_maps.c.png_sha)
            .where(explorer_maps.c.dataset_id == ds)
            .order_by(explorer_maps.c.number.desc())
            .limit(1)
        ).first()
        created = now()
        manifest = {
            "format": FORMAT,
            "project": project,
            "version": number,
            "created_at": created.isoformat(),
            "run_id": run_id,
            "description": description,
            "config": config_doc,
            "items": manifest_items,
            "counts": counts,
            "model": _model_entry(mdl) if mdl else None,
            "deployments": [
                {
                    "number": d["number"],
                    "model": d["model_number"],
                    "model_type": d["model_type"],
                    "summary": d["summary"],
                    "artifacts": {
                        f"deployment-{d['number']}-{d['model_type']}.zip": d["zip_sha"],
                        f"deployment-{d['number']}-report.json": d["report_sha"],
                    },
                }
                for d in deps
            ],
            "explorer": {"map": explorer.number, "artifacts": {"explorer.png": explorer.png_sha}}
            if explorer
            else None,
        }
        manifest_sha = registry.put_bytes(
            blobs, json.dumps(manifest, sort_keys=True, indent=1).encode("utf-8")
        )
        metrics = mdl["metrics"] if mdl else {}
        summary = {
            **counts,
            "model": mdl["number"] if mdl else None,
            "validation_accuracy": metrics.get("validation_accuracy"),
            "test_accuracy": metrics.get("test_accuracy"),
            "deployments": [d["number"] for d in deps],
        }
        conn.execute(
            versions.insert().values(
                dataset_id=ds,
                number=number,
                description=description,
                run_id=run_id,
                pipeline_id=run.pipeline_id if run else None,
                task_id=run.task_id if run else None,
                model_id=mdl["id"] if mdl else None,
                manifest_sha=manifest_sha,
                summary=json.dumps(summary, sort_keys=True),
                created_at=created,
            )
        )
    log.info("%s: version %s created (manifest %s)", project, number, manifest_sha[:12])
    return {
        "project": project,
        "version": number,
        "manifest_sha": manifest_sha,
        **summary,
        "reused": False,
    }


def run_version(catalog: Catalog, project: str, run: registry.RunKey) -> dict[str, Any] | None:
    """The version the pipeline task ``run`` already created, as ``create_version``
    returns it with ``reused``; None if it created none."""
    row = registry.find_run_record(catalog, versions, project, run, made="created version")
    if row is None:
        return None
    return {
        "project": project,
        "version": row.number,
        "manifest_sha": row.manifest_sha,
        **json.loads(row.summary),
        "reused": True,
    }


def show_version(
    project: str, number: int, *, catalog: Catalog | None = None, blobs=None
) -> dict[str, Any]:
    """A version's record with its manifest (``manifest``)."""
    from edgeloop.training.train import _context

    catalog, blobs = _context(catalog, blobs)
    for v in registry.list_versions(catalog, project):
        if v["number"] == number:
            data = registry.get_bytes(blobs, v["manifest_sha"], what=f"version {number} manifest")
            return {**v, "manifest": json.loads(data)}
    raise TrainingError(
        f"project {project!r} has no version {number} (list them with `edgeloop versions "
        f"{project}`)"
    )


def _metric_changes(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    ma = (a or {}).get("metrics") or {}
    mb = (b or {}).get("metrics") or {}
    out: dict[str, Any] = {}
    for key in ("validation_accuracy", "test_accuracy"):
        va, vb = ma.get(key), mb.get(key)
        out[key] = {
            "a": va,
            "b": vb,
            "change": round(vb - va, 6) if va is not None and vb is not None else None,
        }
    for label in sorted(set(ma.get("per_class", {})) | set(mb.get("per_class", {}))):
        for m in ("precision", "recall"):
            va = ma.get("per_class", {}).get(label, {}).get(m)
            vb = mb.get("per_class", {}).get(label, {}).get(m)
            if va != vb:
                out[f"{m}[{label}]"] = {
                    "a": va,
                    "b": vb,
                    "change": round(vb - va, 6) if va is not None and vb is not None else None,
                }
    return out


def diff_versions(
    project: str, a: int, b: int, *, catalog: Catalog | None = None, blobs=None
) -> dict[str, Any]:
    """Items added / removed / relabeled / moved between categories / changed content,
    and the metric changes, from version ``a`` to version ``b``."""
    ma = show_version(project, a, catalog=catalog, blobs=blobs)["manifest"]
    mb = show_version(project, b, catalog=catalog, blobs=blobs)["manifest"]
    ia = {i["name"]: i for i in ma["items"]}
    ib = {i["name"]: i for i in mb["items"]}
    both = sorted(set(ia) & set(ib))
    return {
        "project": project,
        "a": a,
        "b": b,
        "added": sorted(set(ib) - set(ia)),
        "removed": sorted(set(ia) - set(ib)),
        "relabeled": [
            {"name": n, "from": ia[n]["label"], "to": ib[n]["label"]}
            for n in both
            if ia[n]["label"] != ib[n]["label"]
        ],
        "recategorized": [
            {"name": n, "from": ia[n]["category"], "to": ib[n]["category"]}
            for n in both
            if ia[n]["category"] != ib[n]["category"]
        ],
        "changed_content": [n for n in both if ia[n]["sha256"] != ib[n]["sha256"]],
        "model": {
            "a": (ma["model"] or {}).get("number"),
            "b": (mb["model"] or {}).get("number"),
        },
        "metrics": _metric_changes(ma["model"], mb["model"]),
    }


def _safe_part(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise TrainingError(f"cannot restore: {what} {value!r} is not usable as a folder name")
    return value


def _write_checked(blobs, sha: str, dest: Path, what: str) -> None:
    data = registry.get_bytes(blobs, sha, what=what)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    if hashlib.sha256(dest.read_bytes()).hexdigest() != sha:
        raise TrainingError(f"restore: {dest} does not match its hash {sha} after writing")


def restore_version(
    project: str, number: int, to: str | Path, *, catalog: Catalog | None = None, blobs=None
) -> dict[str, Any]:
    """Write version ``number`` to ``to`` (a new or empty folder): ``training/<label>/``,
    ``testing/<label>/``, ``unlabeled/``, ``artifacts/`` and ``manifest.json``, plus
    ``SHA256SUMS`` (``sha256sum -c`` format). Every file is checked against its hash."""
    from edgeloop.training.train import _context

    catalog, blobs = _context(catalog, blobs)
    record = show_version(project, number, catalog=catalog, blobs=blobs)
    manifest = record["manifest"]
    to = Path(to)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise TrainingError(f"--to {to}: must be a new or empty folder")
    to.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}  # relative path -> sha256

    def place(rel: PurePosixPath, sha: str, what: str) -> None:
        if str(rel) in written:
            rel = rel.with_name(f"{rel.stem}.{sha[:12]}{rel.suffix}")
        _write_checked(blobs, sha, to / rel, what)
        written[str(rel)] = sha

    for item in manifest["items"]:
        if item["label"]:
            folder = PurePosixPath(
                _safe_part(item["category"] or "training", "category"),
                _safe_part(item["label"], "label"),
            )
        else:
            folder = PurePosixPath(UNLABELED)
        for f in item["files"]:
            place(folder / _safe_part(f["name"], "file name"), f["sha256"], f"item {item['name']}")
    art = PurePosixPath("artifacts")
    if manifest["model"]:
        for name, sha in manifest["model"]["artifacts"].items():
            place(art / name, sha, f"model {manifest['model']['number']} {name}")
        docs = {
            "impulse.json": manifest["model"]["impulse"],
            "metrics.json": manifest["model"]["metrics"],
        }
    else:
        docs = {}
    if manifest["config"] is not None:
        docs["pipeline.json"] = manifest["config"]
    for name, doc in docs.items():
        data = json.dumps(doc, sort_keys=True, indent=1).encode("utf-8")
        (to / art).mkdir(parents=True, exist_ok=True)
        (to / art / name).write_bytes(data)
        written[str(art / name)] = hashlib.sha256(data).hexdigest()
    for dep in manifest["deployments"]:
        for name, sha in dep["artifacts"].items():
            place(art / name, sha, f"deployment {dep['number']} {name}")
    if manifest["explorer"]:
        for name, sha in manifest["explorer"]["artifacts"].items():
            place(art / name, sha, f"explorer map {manifest['explorer']['map']}")
    place(PurePosixPath("manifest.json"), record["manifest_sha"], "manifest")
    sums = "".join(f"{sha}  {rel}\n" for rel, sha in sorted(written.items()))
    (to / "SHA256SUMS").write_text(sums, encoding="utf-8")
    log.info("%s: version %s restored to %s (%s files)", project, number, to, len(written))
    return {"project": project, "version": number, "to": str(to), "files": len(written)}
