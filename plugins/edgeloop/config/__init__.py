"""Pipeline configs: the typed model (``model``), the loader (``loader``: JSON → checks →
model) and schedule parsing (``schedule``)."""

from __future__ import annotations

from edgeloop.config.loader import (
    ConfigErrors,
    config_files,
    errors_of,
    load_pipeline,
    load_pipelines,
)
from edgeloop.config.model import BlockStep, ImportStep, Pipeline, ProjectActionStep, Step

__all__ = [
    "BlockStep",
    "ConfigErrors",
    "ImportStep",
    "Pipeline",
    "ProjectActionStep",
    "Step",
    "config_files",
    "errors_of",
    "load_pipeline",
    "load_pipelines",
]
