"""Every ``EDGELOOP_*`` environment variable, read in one place (``get_settings()``).

| variable | default |
|---|---|
| ``EDGELOOP_HOME`` | ``$AIRFLOW_HOME/edgeloop`` if ``AIRFLOW_HOME`` is set, |
|  | else ``<repo>/var/edgeloop`` |
| ``EDGELOOP_CATALOG_URL`` | ``sqlite:///$EDGELOOP_HOME/catalog.db`` |
| ``EDGELOOP_BLOB_ROOT`` | ``$EDGELOOP_HOME/blobs`` (or ``s3://bucket/prefix``) |
| ``EDGELOOP_BLOB_CONN_ID`` | ``aws_default``: the Airflow connection of an S3 blob root |
| ``EDGELOOP_PIPELINES_DIR`` | ``<repo>/include/pipelines`` |
| ``EDGELOOP_BLOCKS_PATH`` | extra block folders (os.pathsep-separated), searched |
|  | after ``<repo>/include/blocks`` |
| ``EDGELOOP_BLOCK_VENVS`` | ``$EDGELOOP_HOME/block-venvs`` |
| ``EDGELOOP_API_URL`` | ``http://localhost:8080``: the Airflow REST API for ``edgeloop run`` |
| ``EDGELOOP_API_USER`` / ``EDGELOOP_API_PASSWORD`` | ``admin`` / unset |

The variables are read afresh on every call, so a test or a task that changes the
environment sees the change; the settings of one set of values are built once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog_url: str = field(repr=False)  # may hold a password
    blob_root: str  # a local folder or s3://bucket/prefix
    blob_conn_id: str
    pipelines_dir: Path
    blocks_path: tuple[Path, ...]
    block_venvs: Path
    api_url: str
    api_user: str
    api_password: str | None = field(default=None, repr=False)


# Every variable get_settings() reads.
VARIABLES = (
    "EDGELOOP_HOME",
    "AIRFLOW_HOME",
    "EDGELOOP_CATALOG_URL",
    "EDGELOOP_BLOB_ROOT",
    "EDGELOOP_BLOB_CONN_ID",
    "EDGELOOP_PIPELINES_DIR",
    "EDGELOOP_BLOCKS_PATH",
    "EDGELOOP_BLOCK_VENVS",
    "EDGELOOP_API_URL",
    "EDGELOOP_API_USER",
    "EDGELOOP_API_PASSWORD",
)


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return _settings(tuple(env.get(name) for name in VARIABLES))


@lru_cache(maxsize=32)
def _settings(values: tuple[str | None, ...]) -> Settings:
    env = {name: value for name, value in zip(VARIABLES, values, strict=True) if value}
    if env.get("EDGELOOP_HOME"):
        home = Path(env["EDGELOOP_HOME"])
    elif env.get("AIRFLOW_HOME"):
        home = Path(env["AIRFLOW_HOME"]) / "edgeloop"
    else:
        home = REPO_ROOT / "var" / "edgeloop"
    extra_blocks = [Path(p) for p in env.get("EDGELOOP_BLOCKS_PATH", "").split(os.pathsep) if p]
    return Settings(
        home=home,
        catalog_url=env.get("EDGELOOP_CATALOG_URL") or f"sqlite:///{home / 'catalog.db'}",
        blob_root=env.get("EDGELOOP_BLOB_ROOT") or str(home / "blobs"),
        blob_conn_id=env.get("EDGELOOP_BLOB_CONN_ID") or "aws_default",
        pipelines_dir=Path(env.get("EDGELOOP_PIPELINES_DIR") or REPO_ROOT / "include/pipelines"),
        blocks_path=(REPO_ROOT / "include" / "blocks", *extra_blocks),
        block_venvs=Path(env.get("EDGELOOP_BLOCK_VENVS") or home / "block-venvs"),
        api_url=(env.get("EDGELOOP_API_URL") or "http://localhost:8080").rstrip("/"),
        api_user=env.get("EDGELOOP_API_USER") or "admin",
        api_password=env.get("EDGELOOP_API_PASSWORD") or None,
    )
