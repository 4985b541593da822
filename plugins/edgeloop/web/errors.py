"""Errors of the web app: each knows its HTTP status and the request field it is about."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from edgeloop.errors import EdgeloopError

# A row id in a URL: bounded as the databases' BIGINT, so an out-of-range number is a
# 422 naming the field instead of a driver error.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a row id")]


class WebError(EdgeloopError):
    """A request the app refuses; ``loc`` names the field, as FastAPI's 422 errors do."""

    status = 400

    def __init__(self, message: str, *, loc: tuple[str, ...] = (), status: int | None = None):
        super().__init__(f"{'.'.join(loc)}: {message}" if loc else message)
        self.message = message
        self.loc = loc
        if status is not None:
            self.status = status

    def detail(self) -> list[dict[str, object]]:
        """The body's ``detail``, shaped like FastAPI's validation errors."""
        return [{"loc": list(self.loc), "msg": self.message, "type": type(self).__name__}]


class AuthError(WebError):
    """No credential, or one that is unknown, revoked or expired."""

    status = 401


class NotFound(WebError):
    status = 404
