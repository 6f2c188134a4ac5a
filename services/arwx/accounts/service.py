"""Accounts in the catalog: users, their memberships, login sessions, one-time password tokens.

Invariants:

- secrets are never stored: a password as a scrypt hash (``passwords.py``),
  a session token and a password token as their SHA-256 (they are 256-bit
  random, so a fast hash is enough; the hash is the lookup key);
- a session acts in one organization at a time, and only while its user is
  still a member there: every lookup joins the membership, so removing a
  member ends their access at once, in every process;
- a password token is used at most once, before it expires (one UPDATE that
  claims it, in the transaction that uses it).

This module knows nothing of HTTP; ``routes.py`` and the cookie
authenticator (``arwx.gateway.auth``) call it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from arwx.accounts.passwords import check_strength, hash_password, verify_password
from arwx.catalog import Catalog
from arwx.catalog.tables import login_sessions, memberships, orgs, password_tokens, users

SESSION_PREFIX = "arwx_sess_"
TOKEN_PREFIX = "arwx_pwt_"
#: What each role may do. A session acts with its role's scopes (read, write, admin).
ROLES = ("admin", "member", "viewer")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
# Hashing costs ~32 MiB each: at most this many at once per process.
HASHING_AT_ONCE = 2


class AccountError(ValueError):
    """Bad input for an account operation (a malformed email, a weak password, an unknown role)."""


class AlreadyMember(AccountError):
    """The user already belongs to that organization."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: derived from the cookie's secret, which scripts of other
    sites cannot read, so nothing more is stored and every process can check it."""
    return hashlib.sha256(b"arwx-csrf\0" + session_token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """The sign-in name: trimmed and lower-cased; AccountError if it is not an address."""
    e = email.strip().lower()
    if len(e) > 254 or not _EMAIL.match(e):
        raise AccountError(f"{email[:80]!r} is not an email address")
    return e


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role[:40]!r} is not one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True)
class User:
    user_id: str
    email: str

    def public(self) -> dict:
        return {"id": self.user_id, "email": self.email}


@dataclass(frozen=True)
class LoginSession:
    """A valid login session, as the request that carries its cookie sees it."""

    token_hash: str
    user: User
    org: str  # the organization it acts in now
    role: str  # the user's role there
    expires_at_ms: int


@dataclass(frozen=True)
class Member:
    user: User
    org: str
    org_name: str
    role: str
    has_password: bool

    def public(self) -> dict:
        return {**self.user.public(), "role": self.role, "has_password": self.has_password}


class Accounts:
    """Users, memberships, sessions and password tokens in the catalog."""

    def __init__(self, catalog: Catalog, session_ttl_s: float, token_ttl_s: float) -> None:
        self.catalog = catalog
        self.session_ttl_ms = int(session_ttl_s * 1000)
        self.token_ttl_ms = int(token_ttl_s * 1000)
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(hash_password, password)

    # -- users and memberships ----------------------------------------------------------------

    async def create_user(self, email: str, org: str, role: str, password: str | None) -> tuple[Member, bool]:
        """Make ``email`` a member of ``org`` with ``role``, creating the account if new (with
        ``password``, or none yet). An existing account keeps its password: only the person
        (or the operator's CLI) sets it. Returns the membership and whether the account is new.
        Raises AccountError for bad input, AlreadyMember if it already belongs to ``org``."""
        email = normalize_email(email)
        check_role(role)
        if password is not None:
            check_strength(password)
        password_hash = await self._hash(password) if password is not None else None
        now = _now_ms()
        try:
            async with self.catalog.begin() as conn:
                row = (await conn.execute(
                    select(users.c.user_id, users.c.password_hash).where(users.c.email == email)
                )).first()
                created = row is None
                if created:
                    user_id = "usr_" + secrets.token_hex(8)
                    await conn.execute(users.insert().values(
                        user_id=user_id, email=email, password_hash=password_hash, created_at=now
                    ))
                    has_password = password_hash is not None
                else:
                    user_id, has_password = row[0], row[1] is not None
                    is_member = await conn.scalar(select(memberships.c.role).where(
                        (memberships.c.user_id == user_id) & (memberships.c.org == org)
                    ))
                    if is_member is not None:
                        raise AlreadyMember(f"{email} is already a member of this organization")
                await conn.execute(memberships.insert().values(user_id=user_id, org=org, role=role, created_at=now))
                org_name = await conn.scalar(select(orgs.c.name).where(orgs.c.org == org))
        except IntegrityError:
            # The same email added at the same moment by another request (PostgreSQL).
            raise AlreadyMember(f"{email} was just added by another request") from None
        return Member(User(user_id, email), org, org_name or org, role, has_password), created

    async def members(self, org: str) -> list[Member]:
        """The members of ``org``, oldest first."""
        query = (
            select(users.c.user_id, users.c.email, memberships.c.role, users.c.password_hash.is_not(None), orgs.c.name)
            .join(memberships, memberships.c.user_id == users.c.user_id)
            .join(orgs, orgs.c.org == memberships.c.org)
            .where(memberships.c.org == org)
            .order_by(memberships.c.created_at, users.c.user_id)
        )
        async with self.catalog.connect() as conn:
            return [Member(User(r[0], r[1]), org, r[4], r[2], bool(r[3])) for r in await conn.execute(query)]

    async def remove_member(self, org: str, user_id: str) -> bool:
        """Take ``user_id`` out of ``org``; their sessions there end. False if not a member."""
        async with self.catalog.begin() as conn:
            gone = await conn.execute(
                delete(memberships).where((memberships.c.org == org) & (memberships.c.user_id == user_id))
            )
            await conn.execute(
                delete(login_sessions).where((login_sessions.c.org == org) & (login_sessions.c.user_id == user_id))
            )
        return gone.rowcount > 0

    async def orgs_of(self, user_id: str) -> list[tuple[str, str, str]]:
        """(org, name, role) of every organization the user belongs to, oldest membership first."""
        query = (
            select(memberships.c.org, orgs.c.name, memberships.c.role)
            .join(orgs, orgs.c.org == memberships.c.org)
            .where(memberships.c.user_id == user_id)
            .order_by(memberships.c.created_at, memberships.c.org)
        )
        async with self.catalog.connect() as conn:
            return [(r[0], r[1], r[2]) for r in await conn.execute(query)]

    async def set_password(self, email: str, password: str) -> bool:
        """Set an account's password (the operator's ``arwx users set-password``); its sessions end.
        False if there is no such account."""
        check_strength(password)
        email = normalize_email(email)
        password_hash = await self._hash(password)
        async with self.catalog.begin() as conn:
            user_id = await conn.scalar(select(users.c.user_id).where(users.c.email == email))
            if user_id is None:
                return False
            await conn.execute(update(users).where(users.c.user_id == user_id).values(password_hash=password_hash))
            await conn.execute(delete(login_sessions).where(login_sessions.c.user_id == user_id))
        return True

    # -- sign-in ------------------------------------------------------------------------------

    async def check_password(self, email: str, password: str) -> User | None:
        """The account if ``password`` is its password, else None (unknown email, no password
        set, wrong password, or a member of no organization), after the same work in each case."""
        try:
            email = normalize_email(email)
        except AccountError:
            email = ""
        async with self.catalog.connect() as conn:
            row = (await conn.execute(
                select(users.c.user_id, users.c.password_hash).where(users.c.email == email)
            )).first() if email else None
        async with self._hashing:
            ok = await asyncio.to_thread(verify_password, password, row[1] if row else None)
        if not ok or row is None:
            return None
        return User(row[0], email)

    async def start_session(self, user: User) -> tuple[str, LoginSession] | None:
        """A new session of ``user`` in their oldest organization: (cookie token, session).
        None if they belong to no organization."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = _now_ms()
        async with self.catalog.begin() as conn:
            # Expired sessions are swept here, where sessions are made: no background job needed.
            await conn.execute(delete(login_sessions).where(login_sessions.c.expires_at <= now))
            row = (await conn.execute(
                select(memberships.c.org, memberships.c.role)
                .where(memberships.c.user_id == user.user_id)
                .order_by(memberships.c.created_at, memberships.c.org)
                .limit(1)
            )).first()
            if row is None:
                return None
            session = LoginSession(hash_token(token), user, row[0], row[1], now + self.session_ttl_ms)
            await conn.execute(login_sessions.insert().values(
                token_hash=session.token_hash, user_id=user.user_id, org=session.org, created_at=now,
                expires_at=session.expires_at_ms,
            ))
        return token, session

    async def session(self, token: str) -> LoginSession | None:
        """The live session of this cookie token, or None (unknown, ended, expired, or its user
        no longer a member of the organization it acts in). One indexed query."""
        if not token.startswith(SESSION_PREFIX) or len(token) > 100:
            return None
        query = (
            select(users.c.user_id, users.c.email, login_sessions.c.org, memberships.c.role,
                   login_sessions.c.expires_at)
            .join(users, users.c.user_id == login_sessions.c.user_id)
            .join(memberships, (memberships.c.user_id == login_sessions.c.user_id)
                  & (memberships.c.org == login_sessions.c.org))
            .where(login_sessions.c.token_hash == hash_token(token))
        )
        async with self.catalog.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row[4] <= _now_ms():
            return None
        return LoginSession(hash_token(token), User(row[0], row[1]), row[2], row[3], row[4])

    async def switch_org(self, session: LoginSession, org: str) -> LoginSession | None:
        """The session acting in ``org`` from now on; None if its user is not a member there."""
        async with self.catalog.begin() as conn:
            role = await conn.scalar(
                select(memberships.c.role).where(
                    (memberships.c.user_id == session.user.user_id) & (memberships.c.org == org)
                )
            )
            if role is None:
                return None
            await conn.execute(
                update(login_sessions).where(login_sessions.c.token_hash == session.token_hash).values(org=org)
            )
        return LoginSession(session.token_hash, session.user, org, role, session.expires_at_ms)

    async def end_session(self, session: LoginSession) -> None:
        async with self.catalog.begin() as conn:
            await conn.execute(delete(login_sessions).where(login_sessions.c.token_hash == session.token_hash))

    # -- one-time password tokens -------------------------------------------------------------

    async def password_token(self, org: str, role: str = "admin", user_id: str | None = None) -> str:
        """A one-time token that sets a password: of ``user_id``, or (None) of a new account
        the redeemer names, made a ``role`` of ``org``. Shown once; stored hashed."""
        check_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now_ms()
        async with self.catalog.begin() as conn:
            await conn.execute(password_tokens.insert().values(
                token_hash=hash_token(token), user_id=user_id, org=org, role=role, created_at=now,
                expires_at=now + self.token_ttl_ms, used_at=None,
            ))
        return token

    async def redeem(self, token: str, password: str, email: str | None) -> User | None:
        """Use a password token: set the password of its account, or create the account
        (``email`` required) as its organization's ``role``. None if the token is unknown,
        used or expired. AccountError for a weak password, a missing or taken email."""
        check_strength(password)
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        password_hash = await self._hash(password)
        now = _now_ms()
        h = hash_token(token)
        async with self.catalog.begin() as conn:
            # Claimed first, in the transaction that uses it: of two requests with one token,
            # one claims it and the other finds nothing; a refusal below rolls the claim back.
            claimed = await conn.execute(
                update(password_tokens)
                .where((password_tokens.c.token_hash == h) & password_tokens.c.used_at.is_(None)
                       & (password_tokens.c.expires_at > now))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:
                return None
            row = (await conn.execute(
                select(password_tokens.c.user_id, password_tokens.c.org, password_tokens.c.role)
                .where(password_tokens.c.token_hash == h)
            )).one()
            user_id, org, role = row
            if user_id is None:
                if not email:
                    raise AccountError("this link creates an account: give its email")
                email = normalize_email(email)
                if await conn.scalar(select(users.c.user_id).where(users.c.email == email)) is not None:
                    raise AccountError(f"an account with email {email} exists; sign in with it")
                user_id = "usr_" + secrets.token_hex(8)
                await conn.execute(users.insert().values(
                    user_id=user_id, email=email, password_hash=password_hash, created_at=now
                ))
                await conn.execute(memberships.insert().values(user_id=user_id, org=org, role=role, created_at=now))
            else:
                await conn.execute(update(users).where(users.c.user_id == user_id).values(password_hash=password_hash))
                await conn.execute(delete(login_sessions).where(login_sessions.c.user_id == user_id))
            email = await conn.scalar(select(users.c.email).where(users.c.user_id == user_id))
        return User(user_id, email)
