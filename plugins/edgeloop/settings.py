"""Where edgeloop keeps things, from environment variables (prefix ``EDGELOOP_``).

| variable | default |
|---|---|
| ``EDGELOOP_HOME`` | ``$AIRFLOW_HOME/edgeloop`` if ``AIRFLOW_HOME`` is set, else |
|  | ``<repo>/var/edgeloop`` |
| ``EDGELOOP_CATALOG_URL`` | ``sqlite:///$EDGELOOP_HOME/catalog.db`` |
| ``EDGELOOP_BLOB_ROOT`` | ``$EDGELOOP_HOME/blobs`` (or ``s3://bucket/prefix``) |
| ``EDGELOOP_BLOB_CONN_ID`` | ``aws_default``: the Airflow connection of an S3 blob root |
| ``EDGELOOP_PIPELINES_DIR`` | ``<repo>/include/pipelines`` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO_ROOT / "include" / "schemas"


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog_url: str
    blob_root: str  # a local folder or s3://bucket/prefix
    pipelines_dir: Path


def get_settings() -> Settings:
    env = os.environ
    if env.get("EDGELOOP_HOME"):
        home = Path(env["EDGELOOP_HOME"])
    elif env.get("AIRFLOW_HOME"):
        home = Path(env["AIRFLOW_HOME"]) / "edgeloop"
    else:
        home = REPO_ROOT / "var" / "edgeloop"
    return Settings(
        home=home,
        catalog_url=env.get("EDGELOOP_CATALOG_URL") or f"sqlite:///{home / 'catalog.db'}",
        blob_root=env.get("EDGELOOP_BLOB_ROOT") or str(home / "blobs"),
        pipelines_dir=Path(env.get("EDGELOOP_PIPELINES_DIR") or REPO_ROOT / "include/pipelines"),
    )
