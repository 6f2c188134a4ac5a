"""Who is calling: authenticators tried in order, public routes marked where declared.

Invariant: fail closed. A route answers without a key only if it was declared
with ``@public``; every other request (an unknown path too) needs one of the
app's authenticators to name an enabled key, else 401. An authenticator reads
its own credential (a bearer key today; ``X-API-Key``, ``X-Auth-Token`` or a
session cookie later) and returns the key, or None when the request carries
no credential of its kind or a bad one; it never raises for a bad credential.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from arwx.appkeys import API_KEY, TENANCY
from arwx.errors import Unauthorized
from arwx.tenancy import ApiKey

Authenticator = Callable[[web.Request], Awaitable[ApiKey | None]]
AUTHENTICATORS = web.AppKey("arwx_authenticators", list)
_PUBLIC = "arwx_public"


def public(handler: Callable) -> Callable:
    """Mark a handler as served without a key (``/health``)."""
    setattr(handler, _PUBLIC, True)
    return handler


def is_public(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, _PUBLIC, False))


async def bearer_key(request: web.Request) -> ApiKey | None:
    """``Authorization: Bearer arwx_live_...``."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    return await request.config_dict[TENANCY].authenticate(secret.strip())


DEFAULT_AUTHENTICATORS: list[Authenticator] = [bearer_key]


@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """401 unless the route is public or an authenticator names a key (then ``request[API_KEY]``)."""
    if is_public(request):
        return await handler(request)
    for auth in request.config_dict.get(AUTHENTICATORS, DEFAULT_AUTHENTICATORS):
        key = await auth(request)
        if key is not None:
            request[API_KEY] = key
            return await handler(request)
    raise Unauthorized("missing, invalid or revoked API key")
