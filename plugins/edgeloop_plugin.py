"""The edgeloop Airflow plugin: the web app (pages, ingestion API, upload portals, device
intake) served by the api-server under ``/edgeloop``, and its entries in the UI's
navigation and on every DAG."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from edgeloop.web.app import PREFIX, create_app

NAV = [
    ("Projects", "projects", "edgeloop-projects"),
    ("Items", "items", "edgeloop-items"),
    ("Data explorer", "explorer", "edgeloop-explorer"),
    ("Versions & deployments", "versions", "edgeloop-versions"),
    ("Run from code", "code", "edgeloop-code"),
    ("Upload portals", "portals", "edgeloop-portals"),
]


class EdgeloopPlugin(AirflowPlugin):
    name = "edgeloop"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "edgeloop"}]
    external_views = [
        {
            "name": title,
            "href": f"{PREFIX}/{path}",
            "destination": "nav",
            "category": "edgeloop",
            "url_route": route,
        }
        for title, path, route in NAV
    ] + [
        {
            "name": "edgeloop project",
            "href": f"{PREFIX}/dag/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "edgeloop-dag",
        }
    ]
