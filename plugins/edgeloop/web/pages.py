"""The pages (server-rendered jinja2 templates, no front-end build): Projects, Items (the
filter language; the URL carries the query), an item, the Data explorer, Versions and
deployments, Run from code, Portals. Every route here needs an Airflow session.

Page data comes from plain functions over the catalog and the training registry."""

from __future__ import annotations

import io
import json
import logging
import mimetypes
import zipfile
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgeloop.web.errors import NotFound, RowId, WebError

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
PAGE_SIZE = 50
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
SERIES_TYPES = (".csv", ".parquet")
MAX_ZIP_ITEMS = 1000
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
)
UNLABELED = "#9aa0a6"
UNREADABLE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="48">'
    '<text x="4" y="24" font-size="10">unreadable</text></svg>'
)


@cache
def _templates():  # -> Jinja2Templates
    from fastapi.templating import Jinja2Templates

    t = Jinja2Templates(directory=str(TEMPLATES))
    t.env.filters["tojson_compact"] = lambda v: json.dumps(v, sort_keys=True, default=str)
    t.env.globals["palette"] = PALETTE
    return t


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    return _templates().TemplateResponse(
        request, template, {"root": request.scope.get("root_path", ""), **context}
    )


def _catalog():
    from edgeloop.catalog.store import Catalog

    return Catalog.from_settings()


def _blobs():
    from edgeloop.storage.blobs import BlobStore

    return BlobStore.from_settings()


# -- page data (plain functions) --------------------------------------------------------


def project_names(catalog) -> list[str]:
    import sqlalchemy as sa

    from edgeloop.catalog.tables import datasets

    with catalog.engine.connect() as conn:
        return list(conn.execute(sa.select(datasets.c.name).order_by(datasets.c.name)).scalars())


def pipelines_by_project() -> dict[str, list[Any]]:
    from edgeloop.config import load_pipelines
    from edgeloop.settings import get_settings

    pipelines, _ = load_pipelines(get_settings().pipelines_dir)
    out: dict[str, list[Any]] = {}
    for p in pipelines:
        out.setdefault(p.project, []).append(p)
    return out


def project_overview(catalog, project: str, pipelines: list[Any]) -> dict[str, Any]:
    from edgeloop.training import registry

    counts = catalog.counts(project)
    model = registry.current_model(catalog, project)
    return {
        "name": project,
        "total": sum(counts["label"].values()),
        "labels": counts["label"],
        "categories": counts["category"],
        "pipelines": [
            {"id": p.id, "name": p.name, "last": catalog.last_run(p.id)} for p in pipelines
        ],
        "model": model,
    }


def bars(counts: dict[str, int], none: str = "(none)") -> list[dict[str, Any]]:
    """Bar-chart rows: label, count, width in % of the largest, colour."""
    top = max(counts.values(), default=0) or 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {
            "key": k or none,
            "n": n,
            "pct": round(100 * n / top, 1),
            "color": PALETTE[i % len(PALETTE)] if k else UNLABELED,
        }
        for i, (k, n) in enumerate(ranked)
    ]


def check_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys = {k for r in rows for k in r["metadata"] if k.startswith("ei_check_")}
    return sorted(keys)


def check_mark(value: Any) -> str | None:
    if value is None:
        return None
    return "✔" if str(value).strip().lower() in ("1", "1.0", "true", "yes") else "✘"


def preview_kind(name: str) -> str | None:
    low = name.lower()
    if low.endswith(IMAGE_TYPES):
        return "image"
    if low.endswith(SERIES_TYPES):
        return "series"
    return None


def series_svg(data: bytes, name: str, *, width: int = 160, height: int = 48) -> str:
    """A small line plot (SVG) of a CSV/Parquet file's first numeric columns."""
    from edgeloop.training.features import read_table

    table = read_table(data, name)
    import pyarrow.types as pt

    cols = [
        c
        for c, f in zip(table.column_names, table.schema, strict=True)
        if pt.is_floating(f.type) or pt.is_integer(f.type)
    ]
    cols = [c for c in cols if c.lower() not in ("timestamp", "time", "t", "ts")][:3]
    lines = []
    for i, col in enumerate(cols):
        values = [v for v in table.column(col).to_pylist() if v is not None]
        if len(values) < 2:
            continue
        step = max(1, len(values) // width)
        values = values[::step]
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1
        pts = " ".join(
            f"{x * (width - 2) / (len(values) - 1) + 1:.1f},"
            f"{height - 1 - (v - lo) * (height - 2) / span:.1f}"
            for x, v in enumerate(values)
        )
        lines.append(
            f'<polyline fill="none" stroke="{PALETTE[i]}" stroke-width="1" points="{pts}"/>'
        )
    body = (
        "".join(lines) or f'<text x="4" y="{height // 2}" font-size="10">no numeric column</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<rect width="100%" height="100%" fill="#fafafa"/>{body}</svg>'
    )


def explorer_view(catalog, project: str, *, width: int = 900, height: int = 560) -> dict[str, Any]:
    """The latest explorer map's points, scaled into an SVG box, with colours per label."""
    import sqlalchemy as sa

    from edgeloop.catalog.tables import files
    from edgeloop.errors import TrainingError
    from edgeloop.training.explorer import explorer_points_of

    try:
        points = explorer_points_of(project, catalog=catalog)
    except TrainingError as exc:
        return {"error": str(exc), "points": [], "legend": []}
    ids = sorted({p["item_id"] for p in points})
    thumbs: dict[int, dict[str, str]] = {}
    with catalog.engine.connect() as conn:
        for r in conn.execute(
            sa.select(files.c.item_id, files.c.name, files.c.sha256).where(files.c.item_id.in_(ids))
        ):
            if preview_kind(r.name) and r.item_id not in thumbs:
                thumbs[r.item_id] = {"sha": r.sha256, "name": r.name, "kind": preview_kind(r.name)}
    labels = sorted({p["label"] for p in points if p["label"]})
    color = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    xs = [p["x"] for p in points] or [0.0]
    ys = [p["y"] for p in points] or [0.0]
    pad = 16
    sx = (width - 2 * pad) / ((max(xs) - min(xs)) or 1)
    sy = (height - 2 * pad) / ((max(ys) - min(ys)) or 1)
    out = []
    for p in points:
        out.append(
            {
                **p,
                "cx": round(pad + (p["x"] - min(xs)) * sx, 1),
                "cy": round(height - pad - (p["y"] - min(ys)) * sy, 1),
                "color": color.get(p["label"], UNLABELED),
                "thumb": thumbs.get(p["item_id"]),
            }
        )
    legend = [{"label": k, "color": v} for k, v in color.items()]
    legend.append({"label": "unlabeled", "color": UNLABELED})
    return {"points": out, "legend": legend, "width": width, "height": height, "error": None}


def deployment_bundle(catalog, blobs, project: str, number: int) -> bytes:
    """The deployment's library zip with its report (``report.json``) added."""
    from edgeloop.training import registry

    dep = registry.get_deployment(catalog, project, number)
    library = registry.get_bytes(blobs, dep["zip_sha"], what=f"deployment {number} zip")
    report = registry.get_bytes(blobs, dep["report_sha"], what=f"deployment {number} report")
    buf = io.BytesIO(library)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("report.json", report)
    return buf.getvalue()


def items_zip(catalog, blobs, item_ids: list[int]) -> bytes:
    """A ZIP of the items' files, under ``<item name>/<file name>``."""
    import sqlalchemy as sa

    from edgeloop.catalog.tables import files, items

    with catalog.engine.connect() as conn:
        rows = conn.execute(
            sa.select(items.c.id, items.c.name, files.c.name.label("file"), files.c.sha256)
            .join(files, files.c.item_id == items.c.id)
            .where(items.c.id.in_(item_ids))
            .order_by(items.c.name, files.c.name)
        ).all()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for r in rows:
            zf.writestr(f"{r.id}-{r.name.replace('/', '_')}/{r.file}", blobs.read_bytes(r.sha256))
    return buf.getvalue()


# -- routes ------------------------------------------------------------------------------


def make_router(*, authenticate: bool = True) -> APIRouter:
    deps = []
    if authenticate:
        from airflow.api_fastapi.core_api.security import requires_authenticated

        deps.append(Depends(requires_authenticated()))
    router = APIRouter(dependencies=deps, include_in_schema=False)

    def _project(catalog, project: str | None) -> str | None:
        names = project_names(catalog)
        if project and project not in names:
            raise NotFound(f"no project {project!r}", loc=("query", "project"))
        return project or (names[0] if names else None)

    @router.get("/", name="home")
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("projects")), status_code=307)

    @router.get("/projects", name="projects")
    def projects(request: Request, project: str | None = None) -> HTMLResponse:
        catalog = _catalog()
        by_project = pipelines_by_project()
        names = project_names(catalog)
        shown = [project] if project else names
        rows = [project_overview(catalog, n, by_project.get(n, [])) for n in shown if n in names]
        for r in rows:
            r["label_bars"] = bars(r["labels"], "(unlabeled)")
            r["category_bars"] = bars(r["categories"])
        waiting = sorted(set(by_project) - set(names))
        return render(
            request,
            "projects.html",
            page="projects",
            projects=rows,
            names=names,
            project=project,
            waiting={n: by_project[n] for n in waiting},
        )

    @router.get("/items", name="items")
    def items_page(
        request: Request,
        project: str | None = None,
        q: Annotated[str, Query(max_length=2000)] = "",
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> HTMLResponse:
        from edgeloop.catalog.filter import FilterError, find_items

        catalog = _catalog()
        project = _project(catalog, project)
        error, rows = None, []
        if project:
            try:
                rows = find_items(catalog.engine, q.strip() or None, dataset=project)
            except FilterError as exc:
                error = str(exc)
        total = len(rows)
        shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        for r in shown:
            r["previews"] = [
                (f, preview_kind(f["name"])) for f in r["files"] if preview_kind(f["name"])
            ][:1]
            r["marks"] = {k: check_mark(r["metadata"].get(k)) for k in check_keys(shown)}
            r["meta"] = {k: v for k, v in r["metadata"].items() if not k.startswith("ei_check")}
        pages = (total + PAGE_SIZE - 1) // PAGE_SIZE

        def page_url(n: int) -> str:
            query = urlencode({"project": project or "", "q": q, "page": n})
            return f"{request.url_for('items')}?{query}"

        return render(
            request,
            "items.html",
            page="items",
            project=project,
            names=project_names(catalog),
            q=q,
            error=error,
            rows=shown,
            total=total,
            checks=check_keys(shown),
            page_no=page,
            pages=pages,
            page_url=page_url,
        )

    @router.get("/items/{item_id}", name="item")
    def item_page(request: Request, item_id: RowId) -> HTMLResponse:
        from edgeloop.catalog.filter import compile_filter, find_items

        catalog = _catalog()
        found = find_items(catalog.engine, compile_filter(f"id = {item_id}"), include_deleted=True)
        if not found:
            raise NotFound(f"no item {item_id}", loc=("path", "item_id"))
        item = found[0]
        checks = {k: check_mark(v) for k, v in item["metadata"].items() if k.startswith("ei_check")}
        return render(
            request,
            "item.html",
            page="items",
            project=item["dataset"],
            item=item,
            checks=checks,
            names=project_names(catalog),
            preview_kind=preview_kind,
        )

    @router.post("/items/download", name="download_items")
    def download_items(ids: Annotated[list[int], Form()]) -> Response:
        if len(ids) > MAX_ZIP_ITEMS:
            raise WebError(f"at most {MAX_ZIP_ITEMS} items per download", loc=("body", "ids"))
        data = items_zip(_catalog(), _blobs(), ids)
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="items.zip"'},
        )

    @router.get("/blob/{sha256}", name="blob")
    def blob(sha256: str, name: str = "") -> Response:
        _require_file(sha256)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(
            _blobs().read_bytes(sha256),
            media_type=media,
            headers={"Cache-Control": "private, max-age=86400"},
        )

    @router.get("/plot/{sha256}.svg", name="plot")
    def plot(sha256: str, name: str = "x.csv") -> Response:
        _require_file(sha256)
        try:
            svg = series_svg(_blobs().read_bytes(sha256), name)
        except Exception as exc:
            log.info("no plot for %s: %s", name, exc)
            svg = UNREADABLE_SVG
        return Response(svg, media_type="image/svg+xml")

    @router.get("/explorer", name="explorer")
    def explorer(request: Request, project: str | None = None) -> HTMLResponse:
        catalog = _catalog()
        project = _project(catalog, project)
        view = (
            explorer_view(catalog, project)
            if project
            else {"error": "no project yet", "points": [], "legend": []}
        )
        return render(
            request,
            "explorer.html",
            page="explorer",
            project=project,
            names=project_names(catalog),
            view=view,
        )

    @router.get("/versions", name="versions")
    def versions_page(
        request: Request, project: str | None = None, a: int | None = None, b: int | None = None
    ) -> HTMLResponse:
        from edgeloop.errors import TrainingError
        from edgeloop.training import registry
        from edgeloop.training.versions import diff_versions

        catalog = _catalog()
        project = _project(catalog, project)
        versions, deployments, models, diff, error = [], [], [], None, None
        if project:
            versions = registry.list_versions(catalog, project)
            deployments = registry.list_deployments(catalog, project)
            models = registry.list_models(catalog, project)
            if a is not None and b is not None:
                try:
                    diff = diff_versions(project, a, b, catalog=catalog)
                except TrainingError as exc:
                    error = str(exc)
        return render(
            request,
            "versions.html",
            page="versions",
            project=project,
            names=project_names(catalog),
            versions=versions,
            deployments=deployments,
            models=models,
            diff=diff,
            error=error,
            a=a,
            b=b,
        )

    @router.get("/deployments/{project}/{number}.zip", name="deployment_zip")
    def deployment_zip(project: str, number: RowId) -> Response:
        from edgeloop.errors import TrainingError

        try:
            data = deployment_bundle(_catalog(), _blobs(), project, number)
        except TrainingError as exc:
            raise NotFound(str(exc), loc=("path", "number")) from exc
        filename = f"{project}-deployment-{number}.zip".replace('"', "")
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/deployments/{project}/{number}/report", name="deployment_report")
    def deployment_report(project: str, number: RowId) -> Response:
        from edgeloop.errors import TrainingError
        from edgeloop.training import registry

        try:
            dep = registry.get_deployment(_catalog(), project, number)
            data = registry.get_bytes(_blobs(), dep["report_sha"], what="report")
        except TrainingError as exc:
            raise NotFound(str(exc), loc=("path", "number")) from exc
        return Response(data, media_type="application/json")

    @router.get("/code", name="code")
    def code(request: Request, project: str | None = None) -> HTMLResponse:
        from edgeloop.runs.snippets import LANGUAGES, snippet

        by_project = pipelines_by_project()
        shown = [
            p for n, ps in sorted(by_project.items()) if not project or n == project for p in ps
        ]
        samples = [
            {
                "id": p.id,
                "name": p.name,
                "project": p.project,
                "samples": [(lang, snippet(p.id, lang)) for lang in LANGUAGES],
            }
            for p in shown
        ]
        return render(
            request,
            "code.html",
            page="code",
            project=project,
            names=project_names(_catalog()),
            pipelines=samples,
        )

    @router.get("/portals", name="portals")
    def portals_page(request: Request) -> HTMLResponse:
        from edgeloop.web.portals import list_portals

        catalog = _catalog()
        return render(
            request,
            "portals.html",
            page="portals",
            project=None,
            names=project_names(catalog),
            portals=list_portals(catalog),
        )

    @router.get("/dag/{dag_id}", name="dag")
    def dag_view(request: Request, dag_id: str) -> RedirectResponse:
        """The per-DAG tab: the project of pipeline ``dag_id``."""
        for project, ps in pipelines_by_project().items():
            if any(p.id == dag_id for p in ps):
                return RedirectResponse(
                    f"{request.url_for('projects')}?{urlencode({'project': project})}",
                    status_code=307,
                )
        raise NotFound(f"{dag_id!r} is not an edgeloop pipeline", loc=("path", "dag_id"))

    return router


def _require_file(sha256: str) -> None:
    """Only the catalog's files are served (not the models' or other artifacts' blobs)."""
    import sqlalchemy as sa

    from edgeloop.catalog.tables import files

    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise WebError("expected a sha256 (64 lowercase hex digits)", loc=("path", "sha256"))
    with _catalog().engine.connect() as conn:
        if (
            conn.execute(sa.select(files.c.id).where(files.c.sha256 == sha256).limit(1)).first()
            is None
        ):
            raise NotFound("no catalog file with this content", loc=("path", "sha256"))
