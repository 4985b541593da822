"""Upload portals (seed 001): an outside party, holding a portal's link (its token),
uploads files and folders into the portal's bucket path; nothing else. No listing, no
download, no delete; the page shows only what was uploaded from it in this session.

Identical content at the same key is skipped (the object's ``sha256`` metadata), a
same-name file with new content replaces the object. A pipeline's import step over the
bucket path brings the uploads into a project.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import now, portal_uploads, portals
from edgeloop.errors import EdgeloopError
from edgeloop.ingest.labeling import clean_label
from edgeloop.web.errors import AuthError, NotFound, RowId, WebError
from edgeloop.web.keys import hash_secret

log = logging.getLogger(__name__)

router = APIRouter(prefix="/portal", tags=["portals"])
TOKEN_LOC = ("query", "token")
MAX_DEPTH = 20


# -- records -------------------------------------------------------------------------------


def parse_bucket_path(path: str) -> tuple[str, str]:
    """(bucket, prefix ending in / or empty) of ``s3://bucket/prefix``."""
    if not path.startswith("s3://") or not path[5:].split("/", 1)[0]:
        raise EdgeloopError(f"--bucket-path: expected s3://BUCKET[/PREFIX], got {path!r}")
    bucket, _, prefix = path[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def create_portal(
    catalog: Catalog,
    name: str,
    *,
    bucket_path: str,
    description: str = "",
    conn_id: str = "aws_default",
    expires_at: datetime | None = None,
) -> tuple[dict[str, Any], str]:
    """A new portal and its token (shown only here: the database keeps its hash)."""
    bucket, prefix = parse_bucket_path(bucket_path)
    if not name.strip():
        raise EdgeloopError("portal NAME must not be empty")
    token = secrets.token_urlsafe(32)
    with catalog.begin() as conn:
        if conn.execute(sa.select(portals.c.id).where(portals.c.name == name)).first():
            raise EdgeloopError(f"a portal named {name!r} exists (revoke it or pick another name)")
        portal_id = conn.execute(
            portals.insert()
            .values(
                name=name,
                description=description,
                bucket_path=f"s3://{bucket}/{prefix}",
                conn_id=conn_id,
                token_hash=hash_secret(token),
                created_at=now(),
                expires_at=expires_at,
            )
            .returning(portals.c.id)
        ).scalar_one()
    return get_portal(catalog, portal_id), token


def get_portal(catalog: Catalog, portal_id: int) -> dict[str, Any]:
    with catalog.engine.connect() as conn:
        row = conn.execute(sa.select(portals).where(portals.c.id == portal_id)).first()
    if row is None:
        raise NotFound(f"no portal {portal_id}", loc=("path", "portal_id"))
    return dict(row._mapping)


def list_portals(catalog: Catalog) -> list[dict[str, Any]]:
    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(portals).order_by(portals.c.name)).all()
    return [{k: v for k, v in r._mapping.items() if k != "token_hash"} for r in rows]


def revoke_portal(catalog: Catalog, name: str) -> None:
    with catalog.begin() as conn:
        n = conn.execute(
            portals.update()
            .where((portals.c.name == name) & portals.c.revoked_at.is_(None))
            .values(revoked_at=now())
        ).rowcount
    if not n:
        raise EdgeloopError(f"no live portal named {name!r}")


def portal_link(portal_id: int, token: str, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/edgeloop/portal/{portal_id}?token={token}"


def check_token(catalog: Catalog, portal_id: int, token: str | None) -> dict[str, Any]:
    """The portal, if ``token`` is its live token; 401/403/404 otherwise, naming the token."""
    portal = get_portal(catalog, portal_id)
    if not token:
        raise AuthError("this page needs the portal's link (its token)", loc=TOKEN_LOC)
    if not secrets.compare_digest(hash_secret(token), portal["token_hash"]):
        raise AuthError("this token does not open this portal", loc=TOKEN_LOC, status=403)
    if portal["revoked_at"] is not None:
        raise AuthError("this portal's link was revoked", loc=TOKEN_LOC, status=403)
    expires = portal["expires_at"]
    if expires is not None:
        if expires.tzinfo is None:  # SQLite gives naive UTC times back
            from datetime import UTC

            expires = expires.replace(tzinfo=UTC)
        if expires <= now():
            raise AuthError("this portal's link has expired", loc=TOKEN_LOC, status=403)
    return portal


# -- uploads -------------------------------------------------------------------------------


def safe_relpath(raw: str) -> str:
    """A relative path inside the portal (folders kept; no '..', no absolute paths, no
    control characters)."""
    raw_parts = raw.replace("\\", "/").split("/")
    parts = [p for p in (clean_label(p) for p in raw_parts) if p]
    if not parts or any(p.strip() == ".." for p in raw_parts) or len(parts) > MAX_DEPTH:
        raise EdgeloopError(f"not a file path inside the portal: {raw!r}")
    return "/".join(parts)


def s3_client(conn_id: str):  # -> botocore S3 client
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()


def put_upload(client, portal: dict[str, Any], relpath: str, data: bytes) -> dict[str, Any]:
    """Write one file to the portal's bucket path: ``unchanged`` (same content there,
    skipped), ``replaced`` (same name, new content) or ``new``."""
    bucket, prefix = parse_bucket_path(portal["bucket_path"])
    key = prefix + relpath
    sha = hashlib.sha256(data).hexdigest()
    outcome = "new"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        outcome = "unchanged" if head.get("Metadata", {}).get("sha256") == sha else "replaced"
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    if outcome != "unchanged":
        client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": sha})
    log.info("portal %s: %s s3://%s/%s", portal["name"], outcome, bucket, key)
    return {"path": relpath, "size": len(data), "sha256": sha, "outcome": outcome}


def record_uploads(catalog: Catalog, portal_id: int, results: list[dict[str, Any]]) -> None:
    if not results:
        return
    with catalog.begin() as conn:
        conn.execute(
            portal_uploads.insert(),
            [
                {
                    "portal_id": portal_id,
                    "key": r["path"],
                    "sha256": r["sha256"],
                    "size": r["size"],
                    "outcome": r["outcome"],
                    "uploaded_at": now(),
                }
                for r in results
            ],
        )


# -- endpoints -----------------------------------------------------------------------------


class PortalFile(BaseModel):
    path: str
    size: int
    sha256: str
    outcome: str  # new | replaced | unchanged


class PortalResult(BaseModel):
    portal: str
    files: list[PortalFile]


Token = Annotated[str | None, Query(description="the token from the portal's link")]


@router.get("/{portal_id}", response_class=HTMLResponse, include_in_schema=False)
def portal_page(request: Request, portal_id: RowId, token: Token = None) -> HTMLResponse:
    from edgeloop.web.pages import render

    portal = check_token(Catalog.from_settings(), portal_id, token)
    return render(request, "portal.html", portal=portal, token=token, public=True)


@router.post(
    "/{portal_id}/files",
    response_model=PortalResult,
    responses={
        401: {"description": "no token"},
        403: {"description": "a wrong, revoked or expired token"},
        404: {"description": "no such portal"},
    },
)
def portal_upload(
    portal_id: RowId,
    files: Annotated[list[UploadFile], File(description="files to upload")],
    token: Token = None,
    paths: Annotated[list[str] | None, Form(description="relative paths (folders)")] = None,
) -> PortalResult:
    """Upload files (with ``paths``: their relative paths, for folders) into the portal."""
    catalog = Catalog.from_settings()
    portal = check_token(catalog, portal_id, token)
    if paths is not None and len(paths) != len(files):
        raise WebError(f"{len(paths)} path(s) for {len(files)} file(s)", loc=("body", "paths"))
    named = []
    for i, f in enumerate(files):
        raw = paths[i] if paths else (f.filename or "")
        try:
            named.append((safe_relpath(raw), f))
        except EdgeloopError as exc:
            where = ("body", "paths", str(i)) if paths else ("body", "files", str(i), "filename")
            raise WebError(str(exc), loc=where) from exc
    client = s3_client(portal["conn_id"])
    results = [put_upload(client, portal, rel, f.file.read()) for rel, f in named]
    record_uploads(catalog, portal_id, results)
    return PortalResult(portal=portal["name"], files=[PortalFile(**r) for r in results])
