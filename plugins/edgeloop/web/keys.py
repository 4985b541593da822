"""Project API keys (stored as sha256 only), the project's ingestion settings (HMAC key,
device-output threshold) and their checks. Plain functions over a ``Catalog``."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import api_keys, datasets, ingest_settings, now
from edgeloop.errors import EdgeloopError
from edgeloop.web.errors import AuthError

KEY_PREFIX = "el_"
DEFAULT_THRESHOLD = 0.8


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def settings_of(conn: sa.Connection, dataset_id: int) -> dict[str, Any]:
    """The project's ingestion settings, made on first use (a fresh HMAC key)."""
    row = conn.execute(
        sa.select(ingest_settings).where(ingest_settings.c.dataset_id == dataset_id)
    ).first()
    if row is None:
        conn.execute(
            ingest_settings.insert().values(
                dataset_id=dataset_id,
                hmac_key=secrets.token_hex(32),
                device_threshold=DEFAULT_THRESHOLD,
                created_at=now(),
            )
        )
        row = conn.execute(
            sa.select(ingest_settings).where(ingest_settings.c.dataset_id == dataset_id)
        ).one()
    return dict(row._mapping)


def create_api_key(catalog: Catalog, project: str) -> dict[str, Any]:
    """A new API key for ``project`` (created if new); the key is shown only here."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, project)
        key_id = conn.execute(
            api_keys.insert()
            .values(dataset_id=ds, key_hash=hash_secret(key), prefix=key[:10], created_at=now())
            .returning(api_keys.c.id)
        ).scalar_one()
        hmac_key = settings_of(conn, ds)["hmac_key"]
    return {"project": project, "id": key_id, "api_key": key, "hmac_key": hmac_key}


def list_api_keys(catalog: Catalog, project: str) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        ds = catalog.dataset_id(conn, project, create=False)
        if ds is None:
            return []
        rows = conn.execute(
            sa.select(
                api_keys.c.id, api_keys.c.prefix, api_keys.c.created_at, api_keys.c.revoked_at
            )
            .where(api_keys.c.dataset_id == ds)
            .order_by(api_keys.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def revoke_api_keys(catalog: Catalog, project: str, *, key_id: int | None = None) -> int:
    """Revoke one key of the project (``key_id``) or all its live keys; return how many."""
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, project, create=False)
        if ds is None:
            raise EdgeloopError(f"project {project!r} does not exist in the catalog")
        query = api_keys.update().where(
            (api_keys.c.dataset_id == ds) & api_keys.c.revoked_at.is_(None)
        )
        if key_id is not None:
            query = query.where(api_keys.c.id == key_id)
        n = conn.execute(query.values(revoked_at=now())).rowcount
    if key_id is not None and n == 0:
        raise EdgeloopError(f"project {project!r} has no live API key with id {key_id}")
    return n


def project_of_key(catalog: Catalog, key: str | None) -> tuple[int, str]:
    """(dataset id, project) of a live API key; AuthError naming ``x-api-key`` otherwise."""
    loc = ("header", "x-api-key")
    if not key:
        raise AuthError(
            "an API key is required (create one with `edgeloop api-key create`)", loc=loc
        )
    with catalog.engine.connect() as conn:
        row = conn.execute(
            sa.select(api_keys.c.dataset_id, api_keys.c.revoked_at, datasets.c.name)
            .join(datasets, datasets.c.id == api_keys.c.dataset_id)
            .where(api_keys.c.key_hash == hash_secret(key))
        ).first()
    if row is None:
        raise AuthError("unknown API key", loc=loc)
    if row.revoked_at is not None:
        raise AuthError("this API key was revoked", loc=loc)
    return int(row.dataset_id), str(row.name)


def project_settings(catalog: Catalog, dataset_id: int) -> dict[str, Any]:
    with catalog.begin() as conn:
        return settings_of(conn, dataset_id)


def set_threshold(catalog: Catalog, project: str, threshold: float) -> float:
    if not 0 < threshold <= 1:
        raise EdgeloopError(f"threshold: expected a probability in (0, 1], got {threshold!r}")
    with catalog.begin() as conn:
        ds = catalog.dataset_id(conn, project)
        settings_of(conn, ds)
        conn.execute(
            ingest_settings.update()
            .where(ingest_settings.c.dataset_id == ds)
            .values(device_threshold=threshold)
        )
    return threshold
