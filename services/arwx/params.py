"""Query-string parameters, parsed the same way by every route set.

A bad value is a ``BadRequest`` that names the parameter, rendered as a 400 by
the app's one error middleware.
"""

from __future__ import annotations

from aiohttp import web

from arwx.errors import BadRequest


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in ``lo..hi``; ``default`` when absent or empty."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not lo <= v <= hi:
        raise BadRequest(f"{name} must be in {lo}..{hi}")
    return v
