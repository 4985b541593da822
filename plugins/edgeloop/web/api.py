"""The ingestion API (seed 002) and the device-output intake (seed 003), authenticated by
a project API key (``x-api-key``). Thin endpoints over ``ingestion`` and ``ingest.upload``.

Errors are 4xx bodies ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` (FastAPI's
validation-error shape) whose ``loc`` names the field."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Request, UploadFile
from pydantic import BaseModel

from edgeloop.web.errors import WebError
from edgeloop.web.ingestion import DeviceOutput

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["ingestion"])

ERRORS = {
    400: {"description": "Bad input; `detail[].loc` names the field"},
    401: {"description": "Missing, unknown or revoked `x-api-key`"},
    409: {"description": "A duplicate was refused (`x-disallow-duplicates`)"},
    422: {"description": "Invalid field; `detail[].loc` names it"},
}


class Kind(StrEnum):
    training = "training"
    testing = "testing"
    anomaly = "anomaly"


class FileResult(BaseModel):
    name: str
    item_id: int
    sha256: str
    outcome: str  # new | updated | unchanged | duplicate
    label: str | None = None
    category: str | None = None


class IngestResult(BaseModel):
    project: str
    files: list[FileResult]
    signature: str | None = None  # valid | invalid | unsigned (the /data endpoint)
    asset_event: bool = False


class DeviceResult(BaseModel):
    project: str
    lowest_confidence: float
    threshold: float
    captured: bool
    reason: str
    item: FileResult | None = None
    asset_event: bool = False


def _catalog():
    from edgeloop.catalog.store import Catalog

    return Catalog.from_settings()


def api_project(x_api_key: Annotated[str | None, Header()] = None) -> tuple[int, str]:
    """(dataset id, project) of the request's API key."""
    from edgeloop.web.keys import project_of_key

    return project_of_key(_catalog(), x_api_key)


Project = Annotated[tuple[int, str], Depends(api_project)]


def _emit(request: Request, project: str, results: list[dict[str, Any]], how: str) -> bool:
    changed = [r for r in results if r["outcome"] in ("new", "updated")]
    if not changed:
        return False
    emit = request.app.state.emit_asset_event
    try:
        return bool(emit(project, {"via": how, "items": len(changed)}))
    except Exception:  # the data is committed; a missing event must not fail the upload
        log.exception("cannot emit the asset event of project %s", project)
        return False


def _refuse_duplicates(dataset_id: int, datas: list[tuple[str, bytes]]) -> None:
    import hashlib

    import sqlalchemy as sa

    from edgeloop.catalog.tables import items

    shas = {hashlib.sha256(d).hexdigest(): n for n, d in datas}
    with _catalog().engine.connect() as conn:
        rows = conn.execute(
            sa.select(items.c.sha256, items.c.id).where(
                (items.c.dataset_id == dataset_id)
                & items.c.sha256.in_(list(shas))
                & items.c.deleted_at.is_(None)
            )
        ).all()
    if rows:
        name = shas[rows[0].sha256]
        raise WebError(
            f"{name!r} duplicates item {rows[0].id} (x-disallow-duplicates is set); "
            "nothing was stored",
            loc=("body", "files", name),
            status=409,
        )


@router.post("/{kind}/files", response_model=IngestResult, responses=ERRORS)
def ingest_files(
    request: Request,
    kind: Kind,
    project: Project,
    files: Annotated[list[UploadFile], File(description="one or more files")],
    x_label: Annotated[str | None, Header(max_length=200)] = None,
    x_no_label: Annotated[bool, Header()] = False,
    x_disallow_duplicates: Annotated[bool, Header()] = False,
    x_add_date_id: Annotated[bool, Header()] = False,
) -> IngestResult:
    """Upload files into the key's project (category = the path's kind). The label is
    ``x-label``, none with ``x-no-label``, else the file name's part before the first
    ``.``; identical content is stored once per project."""
    from edgeloop.errors import EdgeloopError
    from edgeloop.ingest.upload import Upload, UploadSource, ingest_uploads, safe_name

    dataset_id, name = project
    uploads = []
    for i, f in enumerate(files):
        try:
            fname = safe_name(f.filename, add_date_id=x_add_date_id)
        except EdgeloopError as exc:
            raise WebError(str(exc), loc=("body", "files", str(i), "filename")) from exc
        uploads.append(Upload(name=fname, data=f.file.read()))
    if len({u.name for u in uploads}) != len(uploads):
        raise WebError("two files have the same name (set x-add-date-id)", loc=("body", "files"))
    if x_disallow_duplicates:
        _refuse_duplicates(dataset_id, [(u.name, u.data) for u in uploads])
    results = ingest_uploads(
        name,
        uploads,
        source=UploadSource(kind.value),
        category=kind.value,
        label=x_label,
        no_label=x_no_label,
    )
    return IngestResult(
        project=name,
        files=[FileResult(**r) for r in results],
        asset_event=_emit(request, name, results, f"api/{kind.value}/files"),
    )


DATA_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DataAcquisition"}},
            "application/cbor": {"schema": {"$ref": "#/components/schemas/DataAcquisition"}},
        },
    }
}


@router.post("/{kind}/data", response_model=IngestResult, responses=ERRORS, openapi_extra=DATA_BODY)
async def ingest_data(
    request: Request,
    kind: Kind,
    project: Project,
    x_file_name: Annotated[str | None, Header(max_length=255)] = None,
    x_label: Annotated[str | None, Header(max_length=200)] = None,
    x_no_label: Annotated[bool, Header()] = False,
    x_disallow_duplicates: Annotated[bool, Header()] = False,
    x_add_date_id: Annotated[bool, Header()] = True,
) -> IngestResult:
    """One sample in the data acquisition format, JSON or CBOR (``Content-Type:
    application/cbor``). A bad signature is stored but marked (metadata ``ei_signature:
    invalid``, ``ei_check_signature: 0``) and kept out of training (category
    ``excluded``)."""
    from edgeloop.errors import EdgeloopError
    from edgeloop.ingest.upload import Upload, UploadSource, ingest_uploads, safe_name
    from edgeloop.web.ingestion import parse_acquisition, signature_state
    from edgeloop.web.keys import project_settings

    dataset_id, name = project
    raw = await request.body()
    ctype = request.headers.get("content-type")
    data = parse_acquisition(raw, ctype)
    state = signature_state(raw, data, project_settings(_catalog(), dataset_id)["hmac_key"])
    ext = ".cbor" if (ctype or "").lower().startswith("application/cbor") else ".json"
    default = (data.payload.device_name or data.payload.device_type) + ext
    try:
        fname = safe_name(x_file_name or default, add_date_id=x_add_date_id)
    except EdgeloopError as exc:
        raise WebError(str(exc), loc=("header", "x-file-name")) from exc
    if not fname.endswith(ext):
        fname += ext
    if x_disallow_duplicates:
        _refuse_duplicates(dataset_id, [(fname, raw)])
    metadata = {
        "ei_signature": state,
        "device_type": data.payload.device_type,
        "interval_ms": str(data.payload.interval_ms),
    }
    if data.payload.device_name:
        metadata["device_name"] = data.payload.device_name
    if state != "unsigned":
        metadata["ei_check_signature"] = "1" if state == "valid" else "0"
    results = ingest_uploads(
        name,
        [Upload(name=fname, data=raw, metadata=metadata)],
        source=UploadSource(kind.value),
        category=kind.value if state != "invalid" else "excluded",
        label=x_label,
        no_label=x_no_label,
    )
    return IngestResult(
        project=name,
        files=[FileResult(**r) for r in results],
        signature=state,
        asset_event=_emit(request, name, results, f"api/{kind.value}/data"),
    )


@router.post("/device-output", response_model=DeviceResult, responses=ERRORS, tags=["intake"])
def device_output(request: Request, project: Project, body: DeviceOutput) -> DeviceResult:
    """A deployed model's output (seed 003). When the lowest per-cell top-class probability
    is under the project's threshold (default 0.8) the image becomes an unlabeled item
    with the device, model and confidence as metadata."""
    from edgeloop.ingest.upload import Upload, UploadSource, ingest_uploads, safe_name
    from edgeloop.web.ingestion import decode_image, lowest_confidence
    from edgeloop.web.keys import project_settings

    dataset_id, name = project
    lowest = lowest_confidence(body.output_tensors)
    threshold = float(project_settings(_catalog(), dataset_id)["device_threshold"])
    out = DeviceResult(
        project=name, lowest_confidence=lowest, threshold=threshold, captured=False, reason=""
    )
    if lowest >= threshold:
        out.reason = f"confident: lowest top-class probability {lowest:.3f} >= {threshold}"
        return out
    if body.image is None:
        out.reason = "under the threshold, but no image was sent"
        return out
    data, ext = decode_image(body.image)
    from edgeloop.errors import EdgeloopError

    try:
        base = body.image_name or f"{body.device_id}{ext}"
        fname = safe_name(base if base.lower().endswith(ext) else base + ext, add_date_id=True)
    except EdgeloopError as exc:
        raise WebError(str(exc), loc=("body", "image_name"), status=422) from exc
    metadata = {
        "device_id": body.device_id,
        "model_id": body.model_id,
        "confidence": f"{lowest:.4f}",
        "threshold": str(threshold),
    }
    results = ingest_uploads(
        name,
        [Upload(name=fname, data=data, metadata=metadata)],
        source=UploadSource("device-output"),
        category=None,
        no_label=True,
    )
    out.captured = results[0]["outcome"] in ("new", "updated")
    out.reason = f"lowest top-class probability {lowest:.3f} < {threshold}: " + (
        "stored as an unlabeled item" if out.captured else f"image is {results[0]['outcome']}"
    )
    out.item = FileResult(**results[0])
    out.asset_event = _emit(request, name, results, "api/device-output")
    return out
