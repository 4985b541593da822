"""The FastAPI app the Airflow plugin mounts at ``/edgeloop`` (api-server).

- ``/api/...``: the ingestion API and device intake (project API key, ``api.py``);
- ``/portal/...``: upload portals (the portal's token, ``portals.py``);
- everything else: the pages, authenticated by Airflow itself (the UI's JWT cookie or a
  bearer token: ``requires_authenticated()``); a browser without a session is sent to
  Airflow's login.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from edgeloop.web.errors import WebError

log = logging.getLogger(__name__)

PREFIX = "/edgeloop"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document plus the data acquisition schema the /data bodies name."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    from edgeloop.web.ingestion import DataAcquisition

    doc = get_openapi(title=app.title, version=app.version, routes=app.routes, servers=app.servers)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    extra = DataAcquisition.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(extra.pop("$defs", {}))
    schemas["DataAcquisition"] = extra
    app.openapi_schema = doc
    return doc


def create_app(*, authenticate: bool = True, emit_asset_event=None) -> FastAPI:
    """The app. ``authenticate=False`` leaves the pages open (tests of a bare app only);
    ``emit_asset_event(project, extra) -> bool`` defaults to Airflow's asset manager."""
    from edgeloop.web import api, pages, portals
    from edgeloop.web.ingestion import emit_project_event

    app = FastAPI(
        title="edgeloop",
        version="1",
        description="The edgeloop plugin: ingestion API, device intake, upload portals, pages.",
        servers=[{"url": PREFIX}],
    )
    app.state.emit_asset_event = emit_asset_event or emit_project_event
    app.include_router(api.router)
    app.include_router(portals.router)
    app.include_router(pages.make_router(authenticate=authenticate))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> JSONResponse:
        body: dict[str, Any] = {"detail": getattr(exc, "all", None) or exc.detail()}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        from fastapi.encoders import jsonable_encoder

        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        wants_html = "text/html" in request.headers.get("accept", "")
        if (
            exc.status_code == 401
            and wants_html
            and not request.url.path.startswith((f"{PREFIX}/api/", "/api/"))
        ):
            return RedirectResponse(login_url(str(request.url)), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


def login_url(next_url: str) -> str:
    """Airflow's login page, coming back to ``next_url``."""
    from urllib.parse import quote

    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager in this process (a bare app)
        return f"/auth/login?next={quote(next_url)}"
