"""Who is calling and what they may do: authenticators tried in order, each route's scope checked.

Invariants, fail closed:

- A route answers without a key only if it was declared with ``@public``;
  every other request (an unknown path too) needs one of the app's
  authenticators to name an enabled key, else 401. An authenticator reads its
  own credential (``Authorization: Bearer``, ``X-API-Key``, ``X-Auth-Token``,
  the dashboard's session cookie) and returns the key, or None when the
  request carries no credential of its kind or a bad one; it never raises for
  a bad credential.
- Every routed request is then checked, here and nowhere else, against the
  scope its handler needs (``arwx.tenancy.SCOPES``): the one it declared with
  ``@requires("admin")`` (say), else ``read`` for GET, HEAD and OPTIONS and
  ``write`` for every other method. A valid key without that scope gets 403
  (``Forbidden``). So a route nobody thought about is a ``write`` route at
  worst, and a POST that only reads (a search) declares ``@requires("read")``
  so that a write-only key cannot read through it. A session acts with the
  scopes of its role in the organization (``ROLE_SCOPES``).
- A key bound to one run (``ApiKey.run_id``: the key a Wild run's command
  gets) may call only the routes declared ``@run_bound`` (create, ingest,
  finish), and a ``{run_id}`` in their path must be its run; those whose run
  ids are in the body hold them to ``request[API_KEY].run_id`` themselves.

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
from arwx.tenancy import SCOPES, ApiKey

Authenticator = Callable[[web.Request], Awaitable[ApiKey | None]]
AUTHENTICATORS = web.AppKey("arwx_authenticators", list)
_PUBLIC = "arwx_public"
_SCOPE = "arwx_scope"
_RUN_BOUND = "arwx_run_bound"
#: Methods that only read: they need the ``read`` scope, and no CSRF token with a cookie.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def public(handler: Callable) -> Callable:
    """Mark a handler as served without a key (``/health``)."""
    setattr(handler, _PUBLIC, True)
    return handler


def requires(scope: str) -> Callable[[Callable], Callable]:
    """Declare the scope a handler needs, whatever the method (``@requires("admin")``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def mark(handler: Callable) -> Callable:
        setattr(handler, _SCOPE, scope)
        return handler

    return mark


def run_bound(handler: Callable) -> Callable:
    """Mark a handler a key bound to one run may call: it writes only that run (see the module docstring)."""
    setattr(handler, _RUN_BOUND, True)
    return handler


def is_public(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, _PUBLIC, False))


def own_session(handler: Callable) -> Callable:
    """Mark a handler that changes only the caller's own session (sign out, switch org):
    any member may, a viewer too (it needs only ``read``). The CSRF check still applies."""
    return requires("read")(handler)


def required_scope(request: web.Request) -> str | None:
    """The scope the request's route needs; None when no route serves it (the 404/405 says so)."""
    if request.match_info.http_exception is not None:
        return None
    declared = getattr(request.match_info.handler, _SCOPE, None)
    if declared is not None:
        return declared
    return "read" if request.method in SAFE_METHODS else "write"


async def _key_named(request: web.Request, secret: str) -> ApiKey | None:
    secret = secret.strip()
    return await request.config_dict[TENANCY].authenticate(secret) if secret else None


async def bearer_key(request: web.Request) -> ApiKey | None:
    """``Authorization: Bearer arwx_live_...``."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return await _key_named(request, secret)


SESSION_COOKIE = "arwx_session"
CSRF_HEADER = "X-CSRF-Token"


#: What a signed-in user may do, by role in the organization (``launch`` only by an explicit key).
ROLE_SCOPES = {
    "viewer": frozenset({"read"}),
    "member": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}


def session_key(session: LoginSession) -> ApiKey:
    """What a session acts as: a key of its current organization, named after its user,
    with its role's scopes (none for a role this code does not know)."""
    return ApiKey(
        key_id=f"session:{session.user.user_id}", org=session.org, name=session.user.email, prefix="",
        created_at_ms=0, revoked_at_ms=None, key_hash="", scopes=ROLE_SCOPES.get(session.role, frozenset()),
    )


async def session_cookie(request: web.Request) -> ApiKey | None:
    """The dashboard's ``arwx_session`` cookie (``arwx.accounts``); 403 for a state-changing
    request without the session's ``X-CSRF-Token``. What the session may do is its role's
    scopes (``session_key``), checked like a key's."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or ACCOUNTS not in request.config_dict:
        return None
    session = await request.config_dict[ACCOUNTS].session(token)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, "").encode(), csrf_for(token).encode()
    ):
        raise Forbidden(f"a request signed in with a cookie must carry the {CSRF_HEADER} header of its session")
    request[SESSION] = session
    return session_key(session)




async def x_api_key(request: web.Request) -> ApiKey | None:
    """``X-API-Key: arwx_live_...`` (ml-workbench's clients)."""
    return await _key_named(request, request.headers.get("X-API-Key", ""))


async def x_auth_token(request: web.Request) -> ApiKey | None:
    """``X-Auth-Token: arwx_live_...`` (Wild V2's clients)."""
    return await _key_named(request, request.headers.get("X-Auth-Token", ""))


# The cookie last: a request with a valid key acts as that key, cookie or not.
DEFAULT_AUTHENTICATORS: list[Authenticator] = [bearer_key, x_api_key, x_auth_token, session_cookie]


def check_scope(request: web.Request, key: ApiKey) -> None:
    """``Forbidden`` unless ``key`` holds the scope the request's route needs."""
    scope = required_scope(request)
    if scope is not None and scope not in key.scopes:
        held = ", ".join(s for s in SCOPES if s in key.scopes) or "none"
        who = "your role in this organization" if key.key_id.startswith("session:") else "this API key"
        raise Forbidden(
            f"{who} lacks the {scope!r} scope that {request.method} {request.path} needs (it has: {held})",
            extra={"required_scope": scope},
        )
    if key.run_id is not None:
        routed = request.match_info.http_exception is None
        if routed and not getattr(request.match_info.handler, _RUN_BOUND, False):
            raise Forbidden(f"this API key may only write run {key.run_id!r}; {request.method} {request.path} is not that")
        path_run = request.match_info.get("run_id")
        if path_run is not None and path_run != key.run_id:
            raise Forbidden(f"this API key may only write run {key.run_id!r}, not {path_run!r}")


@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """401 unless the route is public or an authenticator names a key (then ``request[API_KEY]``);
    403 unless that key holds the route's scope."""
    if is_public(request):
        return await handler(request)
    for auth in request.config_dict.get(AUTHENTICATORS, DEFAULT_AUTHENTICATORS):
        key = await auth(request)
        if key is not None:
            request[API_KEY] = key  # set first: the access log names the org of a refused request too
            check_scope(request, key)
            return await handler(request)
    raise Unauthorized("missing, invalid or revoked API key")
