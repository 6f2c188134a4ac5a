"""Who is calling: authenticators tried in order, public routes marked where declared.

Invariant: fail closed. A route answers without a key only if it was declared
with ``@public``; every other request (an unknown path too) needs one of the
app's authenticators to name an enabled key, else 401. An authenticator reads
its own credential (a bearer key; the dashboard's session cookie) and returns
the key, or None when the request carries no credential of its kind or a bad
one; it never raises for a bad credential.

The cookie comes last: a request with a valid key acts as that key, cookie or
not. A browser sends a cookie with requests other sites make it send, so a
state-changing request (not GET, HEAD or OPTIONS) authenticated by the cookie
must also carry the session's CSRF token in ``X-CSRF-Token``, which only the
dashboard's own pages can read (``GET /v1/auth/me``); without it: 403, even
though the credential itself is good.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from arwx.accounts.service import LoginSession, csrf_for
from arwx.appkeys import ACCOUNTS, API_KEY, SESSION, TENANCY
from arwx.errors import Forbidden, Unauthorized
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


_OWN_SESSION = "arwx_own_session"


def own_session(handler: Callable) -> Callable:
    """Mark a handler that changes only the caller's own session (sign out, switch org):
    any member may, a viewer too. The CSRF check still applies."""
    setattr(handler, _OWN_SESSION, True)
    return handler


async def bearer_key(request: web.Request) -> ApiKey | None:
    """``Authorization: Bearer arwx_live_...``."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    return await request.config_dict[TENANCY].authenticate(secret.strip())


SESSION_COOKIE = "arwx_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_key(session: LoginSession) -> ApiKey:
    """What a session acts as: a key of its current organization, named after its user."""
    return ApiKey(
        key_id=f"session:{session.user.user_id}", org=session.org, name=session.user.email, prefix="",
        created_at_ms=0, revoked_at_ms=None, key_hash="",
    )


async def session_cookie(request: web.Request) -> ApiKey | None:
    """The dashboard's ``arwx_session`` cookie (``arwx.accounts``); 403 for a state-changing
    request without the session's ``X-CSRF-Token``, or one a viewer may not make."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or ACCOUNTS not in request.config_dict:
        return None
    session = await request.config_dict[ACCOUNTS].session(token)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf_for(token).encode()):
            raise Forbidden(f"a request signed in with a cookie must carry the {CSRF_HEADER} header of its session")
        if session.role == "viewer" and not getattr(request.match_info.handler, _OWN_SESSION, False):
            raise Forbidden("a viewer of this organization may only read")
    request[SESSION] = session
    return session_key(session)


DEFAULT_AUTHENTICATORS: list[Authenticator] = [bearer_key, session_cookie]


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
