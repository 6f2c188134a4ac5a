"""The account routes: sign in and out, the session, switching organization, members.

Handlers decode, call ``Accounts`` and answer. Every API process serves them
(like ``/sdk/``), whatever its roles: the dashboard signs in wherever its
requests land. Sign-in and password setup are public; the rest need a key or
the session cookie (``arwx.gateway.auth``).

Secrets stay out of logs: bodies are never logged, the access log names the
route template (not the path or query), and the cookie and tokens appear only
in the answers that hand them out.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web

from arwx.accounts.passwords import WeakPassword
from arwx.accounts.ratelimit import AttemptLimiter
from arwx.accounts.service import AccountError, AlreadyMember, LoginSession, csrf_for
from arwx.accounts.wire import Login, OrgSwitch, PasswordSetup, UserCreate
from arwx.appkeys import ACCOUNTS, API_KEY, CONFIG, SESSION
from arwx.errors import BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized
from arwx.gateway.auth import SESSION_COOKIE, own_session, public, requires
from arwx.gateway.body import read_body
from arwx.wire import MAX_ID_LEN, decode_body

# Who signed in, and refusals by address: never the email typed (people type passwords into it).
log = logging.getLogger("arwx.accounts")
MAX_BODY = 16 << 10
WRONG = "wrong email or password"  # one message for an unknown email and a wrong password
ACCOUNT_LIMITER = web.AppKey("arwx_login_account_limiter", AttemptLimiter)
ADDRESS_LIMITER = web.AppKey("arwx_login_address_limiter", AttemptLimiter)


def _over_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS, here or at a proxy in front (``X-Forwarded-Proto``)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _set_cookie(request: web.Request, resp: web.Response, token: str, max_age_s: int) -> None:
    resp.set_cookie(
        SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict", secure=_over_tls(request),
        max_age=max_age_s,
    )


async def _session_body(request: web.Request, session: LoginSession, token: str) -> dict:
    memberships = await request.app[ACCOUNTS].orgs_of(session.user.user_id)
    return {
        "user": session.user.public(),
        "org": session.org,
        "role": session.role,
        "orgs": [{"org": org, "name": name, "role": role} for org, name, role in memberships],
        "csrf": csrf_for(token),
        "expires_at": session.expires_at_ms / 1000,
    }


async def _signed_in(request: web.Request, session: LoginSession, token: str) -> web.Response:
    resp = web.json_response(await _session_body(request, session, token))
    _set_cookie(request, resp, token, max(1, (request.app[ACCOUNTS].session_ttl_ms // 1000)))
    return resp


async def _refuse_if_limited(request: web.Request, *keys: tuple[web.AppKey, str]) -> None:
    wait = max([await request.app[limiter].retry_after(key) for limiter, key in keys])
    if wait > 0:
        log.warning("sign-in refused: too many failures", extra={"remote": request.remote})
        raise TooManyRequests(
            "too many failed sign-ins for this account or from this address; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )


@public
async def login(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_BODY), Login)
    limits = ((ACCOUNT_LIMITER, "email:" + req.email.strip().lower()), (ADDRESS_LIMITER, f"addr:{request.remote}"))
    await _refuse_if_limited(request, *limits)
    accounts = request.app[ACCOUNTS]
    user = await accounts.check_password(req.email, req.password)
    started = await accounts.start_session(user) if user is not None else None
    if started is None:
        for limiter, key in limits:
            await request.app[limiter].failed(key)
        log.info("sign-in failed", extra={"remote": request.remote})
        raise Unauthorized(WRONG)
    await request.app[ACCOUNT_LIMITER].clear(limits[0][1])
    token, session = started
    log.info("signed in", extra={"user": session.user.user_id, "org": session.org, "remote": request.remote})
    return await _signed_in(request, session, token)


@public
async def setup_password(request: web.Request) -> web.Response:
    """Redeem a one-time token (first start, or an account made without a password) and sign in."""
    req = decode_body(await read_body(request, MAX_BODY), PasswordSetup)
    limit = (ADDRESS_LIMITER, f"addr:{request.remote}")
    await _refuse_if_limited(request, limit)
    accounts = request.app[ACCOUNTS]
    try:
        user = await accounts.redeem(req.token, req.password, req.email)
    except (AccountError, WeakPassword) as e:
        raise BadRequest(str(e)) from None
    if user is None:
        await request.app[ADDRESS_LIMITER].failed(limit[1])
        raise NotFound("unknown, used or expired set-password token")
    started = await accounts.start_session(user)
    if started is None:  # its organization is gone
        raise NotFound("the account of this token belongs to no organization")
    token, session = started
    return await _signed_in(request, session, token)


def _session(request: web.Request) -> LoginSession:
    session = request.get(SESSION)
    if session is None:
        raise Unauthorized("not signed in: this route needs the session cookie of POST /v1/auth/login")
    return session


async def me(request: web.Request) -> web.Response:
    return web.json_response(await _session_body(request, _session(request), request.cookies[SESSION_COOKIE]))


@own_session
async def switch_org(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_BODY), OrgSwitch)
    session = await request.app[ACCOUNTS].switch_org(_session(request), req.org)
    if session is None:
        raise NotFound(f"unknown organization {req.org!r}")
    return web.json_response(await _session_body(request, session, request.cookies[SESSION_COOKIE]))


@own_session
async def logout(request: web.Request) -> web.Response:
    await request.app[ACCOUNTS].end_session(_session(request))
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(SESSION_COOKIE, path="/", secure=_over_tls(request), httponly=True, samesite="Strict")
    return resp


@requires("admin")
async def create_user(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_BODY), UserCreate)
    accounts = request.app[ACCOUNTS]
    org = request[API_KEY].org
    try:
        member, created = await accounts.create_user(req.email, org, req.role, req.password)
    except AlreadyMember as e:
        raise Conflict(str(e)) from None
    except (AccountError, WeakPassword) as e:
        raise BadRequest(str(e)) from None
    body = {**member.public(), "created": created}
    if not member.has_password:
        # Handed to the person out of band: shown only now, stored hashed.
        token = await accounts.password_token(org, member.role, member.user.user_id)
        body["password_token"] = token
        body["setup_path"] = f"/setup?token={token}"
    return web.json_response(body, status=201)


async def list_users(request: web.Request) -> web.Response:
    members = await request.app[ACCOUNTS].members(request[API_KEY].org)
    return web.json_response({"users": [m.public() for m in members]})


@requires("admin")
async def remove_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"][:MAX_ID_LEN]
    if not await request.app[ACCOUNTS].remove_member(request[API_KEY].org, user_id):
        raise NotFound(f"unknown user {user_id!r}")
    return web.json_response({"id": user_id, "removed": True})


def add_routes(app: web.Application) -> None:
    cfg = app[CONFIG]
    # Both share the window (one setting): each prunes the other's expired rows too.
    catalog = app[ACCOUNTS].catalog
    app[ACCOUNT_LIMITER] = AttemptLimiter(catalog, cfg.login_account_failures, cfg.login_window_s)
    app[ADDRESS_LIMITER] = AttemptLimiter(catalog, cfg.login_address_failures, cfg.login_window_s)
    app.router.add_post("/v1/auth/login", login)
    app.router.add_post("/v1/auth/setup", setup_password)
    app.router.add_get("/v1/auth/me", me)
    app.router.add_post("/v1/auth/org", switch_org)
    app.router.add_post("/v1/auth/logout", logout)
    app.router.add_post("/v1/users", create_user)
    app.router.add_get("/v1/users", list_users)
    app.router.add_delete("/v1/users/{user_id}", remove_user)
