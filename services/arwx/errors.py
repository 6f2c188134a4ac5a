"""Every error a client can be answered with, and the status it means.

Invariant: code that refuses a request raises one of these (or a subclass
defined next to the code that knows the failure, e.g. ``wire.BadInput``,
``store.StoreUnavailable``); it never builds an HTTP response itself. One
middleware (``arwx.app.observe``) renders them, through the renderer of the
application that routed the request: ``{"error": message, **extra}`` by
default, an adapter's own wire shape where it registered one with
``set_renderer`` (MLflow's ``{"error_code", "message"}``, chachaml's
``{"error"}``). This module knows nothing of aiohttp.
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """A refusal with an HTTP status. ``message`` is shown to the client;
    ``extra`` adds fields to the default JSON body (an ingest receipt of
    what was written before the failure, say)."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"  # a stable name adapters map to their own codes

    def __init__(self, message: str, *, extra: dict | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.extra = extra or {}
        self._headers = headers or {}

    @property
    def message(self) -> str:
        """What the client reads (``str(e)`` unless a subclass hides internals)."""
        return str(self)

    @property
    def headers(self) -> dict[str, str]:
        return self._headers


class BadRequest(ApiError):
    status = 400
    code = "INVALID_PARAMETER_VALUE"


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHENTICATED"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="arwx"', **self._headers}


class Forbidden(ApiError):
    """Known caller, refused action: a key without the scope the route needs (``gateway/auth.py``),
    a cookie request without its CSRF token, a role that may not do it. Never used across
    organizations: another org's things are ``NotFound``."""

    status = 403
    code = "PERMISSION_DENIED"


class NotFound(ApiError):
    """Unknown, or another organization's: existence never leaks (404, not 403)."""

    status = 404
    code = "RESOURCE_DOES_NOT_EXIST"


class EndpointNotFound(NotFound):
    """No route serves the path (aiohttp's own 404): adapters name it apart from a missing resource."""

    code = "ENDPOINT_NOT_FOUND"


class MethodNotAllowed(ApiError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class RequestTimeout(ApiError):
    """The client sent its body too slowly (or stopped sending it)."""

    status = 408
    code = "REQUEST_TIMEOUT"


class Conflict(ApiError):
    status = 409
    code = "RESOURCE_CONFLICT"


class PayloadTooLarge(ApiError):
    status = 413
    code = "REQUEST_LIMIT_EXCEEDED"


class _RetryLater(ApiError):
    """A refusal the client should retry after ``retry_after_s`` (``Retry-After``)."""

    retry_after_s: ClassVar[int] = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s), **self._headers}


class TooManyRequests(_RetryLater):
    status = 429
    code = "TOO_MANY_REQUESTS"


class Unavailable(_RetryLater):
    """An outage, not a bug and not the client's fault: retry later (503)."""

    status = 503
    code = "TEMPORARILY_UNAVAILABLE"
    public_message: ClassVar[str | None] = None  # set: shown instead of the internal detail

    @property
    def message(self) -> str:
        return self.public_message or str(self)


def default_body(e: ApiError) -> dict:
    """arwx's own error shape: ``{"error": "..."}`` plus the error's extra fields."""
    return {"error": e.message, **e.extra}


_BY_STATUS: dict[int, type[ApiError]] = {
    c.status: c
    for c in (BadRequest, Unauthorized, Forbidden, EndpointNotFound, MethodNotAllowed, RequestTimeout, Conflict,
              PayloadTooLarge, TooManyRequests, Unavailable)
}


def from_status(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """The error for an HTTP status someone else chose (aiohttp's 404 and 405, say)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = type(f"Http{status}", (ApiError,), {"status": status})
    return cls(message, headers=headers)
