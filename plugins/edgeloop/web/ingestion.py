"""The ingestion service's logic (seed 002): the data acquisition format (JSON or CBOR),
its HMAC-SHA256 signature, the device-output confidence rule (seed 003) and the project
Asset event. Plain functions; the endpoints in ``api.py`` only call them."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
from hashlib import sha256
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeloop.web.errors import WebError

log = logging.getLogger(__name__)

ZERO_SIGNATURE = "0" * 64
CBOR_TYPES = ("application/cbor",)


# -- the data acquisition format ----------------------------------------------------------


class Protected(BaseModel):
    model_config = ConfigDict(extra="allow")

    ver: Literal["v1"]
    alg: Literal["HS256", "none"]
    iat: int | None = Field(None, description="seconds since the epoch when the data was signed")


class Sensor(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    units: str = Field(max_length=50)


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    device_name: str | None = Field(None, max_length=200)
    device_type: str = Field(min_length=1, max_length=200)
    interval_ms: float = Field(gt=0, allow_inf_nan=False)
    sensors: list[Sensor] = Field(min_length=1)
    values: list[list[float] | float] = Field(
        min_length=1, description="one row per sample, one value per sensor"
    )


class DataAcquisition(BaseModel):
    """The Edge Impulse data acquisition format: sign by filling ``signature`` with 64
    ASCII zeros, HMAC-SHA256 the encoded object with the project's HMAC key, and writing
    the hex digest in its place."""

    protected: Protected
    signature: str = Field(max_length=128)
    payload: Payload


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """The request body as a Python object: CBOR for ``application/cbor``, else JSON."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if not raw:
        raise WebError("the request has no body", loc=("body",))
    try:
        if media in CBOR_TYPES:
            import cbor2

            return cbor2.loads(raw)
        return json.loads(raw)
    except Exception as exc:
        kind = "CBOR" if media in CBOR_TYPES else "JSON"
        raise WebError(f"the body is not valid {kind}: {exc}", loc=("body",)) from exc


def validation_error(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> WebError:
    first = exc.errors()[0]
    err = WebError(first["msg"], loc=(*prefix, *(str(p) for p in first["loc"])), status=422)
    err.all = [  # type: ignore[attr-defined]
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
    ]
    return err


def parse_acquisition(raw: bytes, content_type: str | None) -> DataAcquisition:
    """Decode and check a data acquisition document; errors name the field."""
    doc = decode_body(raw, content_type)
    try:
        data = DataAcquisition.model_validate(doc)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    n = len(data.payload.sensors)
    for i, row in enumerate(data.payload.values):
        width = len(row) if isinstance(row, list) else 1
        values = row if isinstance(row, list) else [row]
        if width != n:
            raise WebError(
                f"row has {width} value(s), the payload names {n} sensor(s)",
                loc=("body", "payload", "values", str(i)),
                status=422,
            )
        if not all(math.isfinite(v) for v in values):
            raise WebError(
                "values must be finite numbers",
                loc=("body", "payload", "values", str(i)),
                status=422,
            )
    return data


def signature_state(raw: bytes, data: DataAcquisition, hmac_key: str) -> str:
    """``valid``, ``invalid`` or ``unsigned`` (``alg`` is ``none``).

    The signature is checked over the bytes as sent, with the signature's 64 hex digits
    replaced by 64 ASCII zeros: the encoded object the sender signed (JSON or CBOR alike,
    whatever its key order or spacing)."""
    if data.protected.alg == "none":
        return "unsigned"
    sig = data.signature.lower()
    if len(sig) != 64 or any(c not in "0123456789abcdef" for c in sig):
        return "invalid"
    zeroed = raw.replace(data.signature.encode(), ZERO_SIGNATURE.encode(), 1)
    if zeroed == raw and sig != ZERO_SIGNATURE:
        return "invalid"
    expected = hmac.new(hmac_key.encode(), zeroed, sha256).hexdigest()
    return "valid" if hmac.compare_digest(expected, sig) else "invalid"


def sign(doc: dict[str, Any], hmac_key: str, *, cbor: bool = False) -> bytes:
    """Encode ``doc`` (JSON or CBOR) signed with ``hmac_key`` as a device does."""
    doc = {**doc, "signature": ZERO_SIGNATURE}
    encode = _encoder(cbor)
    sig = hmac.new(hmac_key.encode(), encode(doc), sha256).hexdigest()
    return encode({**doc, "signature": sig})


def _encoder(cbor: bool):
    if cbor:
        import cbor2

        return cbor2.dumps
    return lambda d: json.dumps(d).encode()


# -- device output (active learning) -------------------------------------------------------


class Tensor(BaseModel):
    name: str = Field("output", max_length=200)
    shape: list[int] = Field(min_length=1, max_length=8, description="the last axis: classes")
    data: list[float] = Field(min_length=1, description="the values, flat, row-major")


class DeviceOutput(BaseModel):
    """What a deployed model's runtime sends: its outputs and, when it was unsure, the
    input image (base64, optionally as a ``data:`` URL)."""

    device_id: str = Field(min_length=1, max_length=200)
    model_id: str = Field(min_length=1, max_length=200)
    output_tensors: list[Tensor] = Field(min_length=1)
    image: str | None = Field(None, description="the input image, base64 (PNG or JPEG)")
    image_name: str | None = Field(None, max_length=255)


def lowest_confidence(tensors: list[Tensor]) -> float:
    """The lowest top-class probability over every cell of every tensor (a cell: one
    position of the axes before the last; the last axis holds the class probabilities)."""
    lowest = 1.0
    for t, tensor in enumerate(tensors):
        loc = ("body", "output_tensors", str(t))
        if any(d <= 0 for d in tensor.shape):
            raise WebError("every dimension must be positive", loc=(*loc, "shape"), status=422)
        if math.prod(tensor.shape) != len(tensor.data):
            raise WebError(
                f"{len(tensor.data)} value(s) for shape {tensor.shape} "
                f"({math.prod(tensor.shape)} expected)",
                loc=(*loc, "data"),
                status=422,
            )
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in tensor.data):
            raise WebError("probabilities must be within 0..1", loc=(*loc, "data"), status=422)
        classes = tensor.shape[-1]
        for start in range(0, len(tensor.data), classes):
            lowest = min(lowest, max(tensor.data[start : start + classes]))
    return lowest


def decode_image(text: str) -> tuple[bytes, str]:
    """(bytes, extension) of a base64 PNG or JPEG (``data:image/...;base64,`` allowed)."""
    loc = ("body", "image")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebError(f"not base64: {exc}", loc=loc, status=422) from exc
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return data, ".jpg"
    raise WebError("not a PNG or JPEG image", loc=loc, status=422)


# -- the project's Airflow Asset -----------------------------------------------------------


def emit_project_event(project: str, extra: dict[str, Any]) -> bool:
    """Record an event on the project's Asset (``edgeloop-project-<project>``, as the DAG
    builder declares it) through Airflow's asset manager, in the api-server's own
    metadata database session: the same call the REST API's ``POST /api/v2/assets/events``
    makes. False when no DAG declares the Asset (Airflow does not know it yet)."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from edgeloop.dag_factory import project_asset

    asset = project_asset(project)
    with create_session() as session:
        model = session.scalar(
            select(AssetModel).where(AssetModel.name == asset.name, AssetModel.uri == asset.uri)
        )
        if model is None:
            log.info("no Airflow asset %s yet: no event", asset.name)
            return False
        event = asset_manager.register_asset_change(
            asset=model, extra=extra, source_is_api=True, session=session
        )
    log.info("asset event on %s: %s", asset.name, extra)
    return event is not None
