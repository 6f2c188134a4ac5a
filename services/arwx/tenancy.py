"""Organizations and API keys, in the catalog.

A key is ``arwx_live_`` plus 32 random URL-safe characters. Only its SHA-256
is stored. Every key belongs to one organization and holds scopes (``SCOPES``):
what it may do there; ``gateway/auth.py`` checks them per route.

Invariant: ``authenticate`` does not query the catalog per request. Keys
are looked up by hash through a bounded in-process cache (``arwx.cache``;
a hash known not to exist is cached too, so a flood of bad keys costs no
queries), and at most once per ``refresh_s`` it reads the catalog's ``keys``
counter, which every key change bumps in the same transaction; when that
counter moved, the cache is emptied. So a key revoked (or created) through
any process is seen by every other process within ``refresh_s`` (plus one
small query), and by this process at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.cache import MISSING, BoundedCache
from arwx.catalog import Catalog
from arwx.catalog.tables import api_keys, catalog_state, orgs

KEY_PREFIX = "arwx_live_"
#: Every scope a key can hold. ``read``: GET routes; ``write``: routes that change data;
#: ``admin``: managing the org's keys; ``launch``: starting work on the org's machines.
SCOPES = ("read", "write", "admin", "launch")
#: What a new key holds unless it names its scopes.
DEFAULT_SCOPES = frozenset({"read", "write"})
#: What keys made before scopes existed hold (migration 0006), and the server's first key.
OPERATOR_SCOPES = frozenset({"read", "write", "admin"})
KEYS_COUNTER = "keys"
CACHE_KEYS = 10_000
# The counter, not age, keeps entries true; the age bound is a backstop.
CACHE_MAX_AGE_S = 300.0


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


class BadScopes(ValueError):
    """A scope list naming something that is not a scope, or nothing at all."""


def parse_scopes(scopes: str | list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Scopes from a list, or from a string separated by commas or spaces (the CLI's, the catalog's)."""
    names = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(names) - set(SCOPES))
    if unknown:
        raise BadScopes(f"unknown scope(s) {', '.join(map(repr, unknown))}; scopes are {', '.join(SCOPES)}")
    if not names:
        raise BadScopes(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return frozenset(names)


def scopes_text(scopes: frozenset[str]) -> str:
    """The stored form: space-separated, in ``SCOPES`` order."""
    return " ".join(s for s in SCOPES if s in scopes)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    org: str
    name: str
    prefix: str
    created_at_ms: int
    revoked_at_ms: int | None
    key_hash: str
    # A key built without scopes may do nothing (fail closed).
    scopes: frozenset[str] = frozenset()
    # Set: the key writes this run only (``gateway/auth.py``); a Wild run's command holds one.
    run_id: str | None = None

    def public(self) -> dict:
        """What the API shows of a key: never the secret, never the hash."""
        return {
            "id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at_ms / 1000,
            "revoked": self.revoked_at_ms is not None,
            "revoked_at": None if self.revoked_at_ms is None else self.revoked_at_ms / 1000,
            "scopes": [s for s in SCOPES if s in self.scopes],
            **({"run_id": self.run_id} if self.run_id is not None else {}),
        }


_KEY_COLUMNS = (
    api_keys.c.key_id, api_keys.c.org, api_keys.c.name, api_keys.c.prefix,
    api_keys.c.created_at, api_keys.c.revoked_at, api_keys.c.key_hash, api_keys.c.scopes,
    api_keys.c.run_id,
)


def _key(row: tuple) -> ApiKey:
    *head, scopes, run_id = row
    return ApiKey(*head, scopes=frozenset(scopes.split()), run_id=run_id)


async def bump_counter(conn: AsyncConnection, name: str) -> None:
    """Tell every process that polls ``name`` that something changed (in ``conn``'s transaction)."""
    # The row is made by the first migration; the UPDATE also serializes key changes.
    await conn.execute(
        update(catalog_state).where(catalog_state.c.name == name).values(value=catalog_state.c.value + 1)
    )


class Tenancy:
    """Orgs and keys in the catalog, with a cached authenticator."""

    def __init__(self, catalog: Catalog, refresh_s: float = 0.25, cache: BoundedCache | None = None) -> None:
        self.catalog = catalog
        self.refresh_s = refresh_s
        # hash -> key, or None for a hash known not to exist
        self._by_hash: BoundedCache[str, ApiKey | None] = cache or BoundedCache(CACHE_KEYS, CACHE_MAX_AGE_S)
        self._seen_version: int | None = None
        self._checked_at = float("-inf")
        self._check_lock = asyncio.Lock()
        self._generation = 0  # grows at every emptying of the cache

    async def _check_counter(self) -> None:
        """Empty the cache if any key changed anywhere since the last look."""
        async with self._check_lock:
            if time.monotonic() - self._checked_at <= self.refresh_s:
                return  # another request looked while this one waited
            async with self.catalog.connect() as conn:
                version = await conn.scalar(
                    select(catalog_state.c.value).where(catalog_state.c.name == KEYS_COUNTER)
                )
            if version != self._seen_version:
                self._by_hash.clear()
                self._generation += 1
                self._seen_version = version
            self._checked_at = time.monotonic()

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The enabled key for this secret, or None. Fails closed."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        h = hash_key(secret)
        if time.monotonic() - self._checked_at > self.refresh_s:
            await self._check_counter()
        key = self._by_hash.get(h, MISSING)
        if key is MISSING:
            generation = self._generation
            async with self.catalog.connect() as conn:
                row = (await conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.key_hash == h))).first()
            key = _key(row) if row is not None else None
            # A read that began before the cache was emptied may predate the change
            # that emptied it: answer with it, but do not keep it.
            if generation == self._generation:
                self._by_hash.put(h, key)
        # compare_digest: the lookup already matched; this keeps the check explicit.
        if key is None or not hmac.compare_digest(key.key_hash, h) or key.revoked_at_ms is not None:
            return None
        return key

    # -- orgs -----------------------------------------------------------------

    async def create_org(self, name: str) -> str:
        org = "org_" + secrets.token_hex(6)
        async with self.catalog.begin() as conn:
            await conn.execute(orgs.insert().values(org=org, name=name, created_at=_now_ms()))
        return org

    async def find_org(self, name: str) -> str | None:
        """The oldest organization with this name."""
        async with self.catalog.connect() as conn:
            return await conn.scalar(
                select(orgs.c.org).where(orgs.c.name == name).order_by(orgs.c.created_at, orgs.c.org).limit(1)
            )

    async def orgs(self) -> list[tuple[str, str]]:
        async with self.catalog.connect() as conn:
            rows = await conn.execute(select(orgs.c.org, orgs.c.name).order_by(orgs.c.created_at, orgs.c.org))
            return [(r[0], r[1]) for r in rows]

    # -- keys -----------------------------------------------------------------

    async def create_key(
        self, org: str, name: str = "", scopes: frozenset[str] = DEFAULT_SCOPES, run_id: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key holding ``scopes`` (``parse_scopes``), bound to run ``run_id`` if given;
        returns it and the secret, which is shown only this once."""
        scopes = parse_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        key = ApiKey(
            key_id="key_" + secrets.token_hex(8),
            org=org,
            name=name,
            prefix=secret[: len(KEY_PREFIX) + 4],
            created_at_ms=_now_ms(),
            revoked_at_ms=None,
            key_hash=hash_key(secret),
            scopes=scopes,
            run_id=run_id,
        )
        async with self.catalog.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    key_id=key.key_id, org=key.org, name=key.name, key_hash=key.key_hash, prefix=key.prefix,
                    created_at=key.created_at_ms, revoked_at=None, scopes=scopes_text(scopes),
                    run_id=run_id,
                )
            )
            await bump_counter(conn, KEYS_COUNTER)
        self._by_hash.put(key.key_hash, key)
        return key, secret

    async def list_keys(self, org: str | None) -> list[ApiKey]:
        """Keys of one org (or of all orgs, for the operator's CLI), oldest first."""
        query = select(*_KEY_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if org is not None:
            query = query.where(api_keys.c.org == org)
        async with self.catalog.connect() as conn:
            return [_key(r) for r in await conn.execute(query)]

    async def revoke_key(self, org: str | None, key_id: str) -> ApiKey | None:
        """Revoke a key of ``org`` (any org when None). None if there is no such key there."""
        where = api_keys.c.key_id == key_id
        if org is not None:
            where &= api_keys.c.org == org
        async with self.catalog.begin() as conn:
            await conn.execute(
                update(api_keys).where(where & api_keys.c.revoked_at.is_(None)).values(revoked_at=_now_ms())
            )
            row = (await conn.execute(select(*_KEY_COLUMNS).where(where))).first()
            if row is None:
                return None
            await bump_counter(conn, KEYS_COUNTER)
        key = _key(row)
        self._by_hash.put(key.key_hash, key)
        return key
