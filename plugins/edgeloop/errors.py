"""The one exception hierarchy of edgeloop.

Every error a user can cause says where (file, JSON path or field), what was
expected and what was received.
"""

from __future__ import annotations

from typing import Any


class EdgeloopError(Exception):
    """Base of every error edgeloop raises on purpose."""


class ConfigError(EdgeloopError):
    """A config, schema-governed document or parameter is invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: str | None = None,
        expected: str | None = None,
        value: Any = None,
    ) -> None:
        self.file = file
        self.path = path
        self.expected = expected
        self.value = value
        parts = [p for p in (file, path) if p]
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if expected is not None:
            text += f" (expected {expected}, got {value!r})"
        super().__init__(text)


class SourceError(EdgeloopError):
    """A data source (bucket, prefix, credentials) cannot be read."""


class BlockError(EdgeloopError):
    """A transformation block failed or is malformed."""


class DeployError(EdgeloopError):
    """A deployment build failed (conversion, code generation or verification)."""


class TrainingError(EdgeloopError):
    """Training, retraining, the explorer, versions or deployments of a project failed."""
