"""Organizations and API keys.

A key is ``arwx_live_`` plus 32 random URL-safe characters. Only its SHA-256
is stored. Every key belongs to one organization. Lookups by hash go through a
bounded in-process cache (``arwx.cache``) whose entries live ``refresh_s``
seconds (so a key revoked through another process stops working within that
bound), updated at once for changes made by this process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyarrow as pa

from arwx.cache import MISSING, BoundedCache
from arwx.store.base import Store

KEY_PREFIX = "arwx_live_"
CACHE_KEYS = 10_000
_SELECT_KEYS = (
    "SELECT key_id, org, name, prefix, toUnixTimestamp64Milli(created_at), "
    "if(isNull(revoked_at), NULL, toUnixTimestamp64Milli(assumeNotNull(revoked_at))), key_hash "
    "FROM api_keys FINAL"
)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ts(ms: int) -> pa.Array:
    return pa.array([ms], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    org: str
    name: str
    prefix: str
    created_at_ms: int
    revoked_at_ms: int | None
    key_hash: str

    def public(self) -> dict:
        """What the API shows of a key: never the secret, never the hash."""
        return {
            "id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at_ms / 1000,
            "revoked": self.revoked_at_ms is not None,
            "revoked_at": None if self.revoked_at_ms is None else self.revoked_at_ms / 1000,
        }


class Tenancy:
    """Orgs and keys on a ``Store``, with a cached authenticator."""

    def __init__(self, store: Store, refresh_s: float = 2.0, cache: BoundedCache | None = None) -> None:
        self.store = store
        self.refresh_s = refresh_s
        # hash -> key, or None for a hash known not to exist (so a flood of bad keys costs no queries)
        self._by_hash: BoundedCache[str, ApiKey | None] = cache or BoundedCache(CACHE_KEYS, refresh_s)

    async def _all(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in await self.store.rows(_SELECT_KEYS)]

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The enabled key for this secret, or None. Fails closed."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        h = hash_key(secret)
        key = self._by_hash.get(h, MISSING)
        if key is MISSING:
            rows = await self.store.rows(_SELECT_KEYS + " WHERE key_hash = {h:String}", {"h": h})
            key = ApiKey(*rows[0]) if rows else None
            self._by_hash.put(h, key)
        # compare_digest: the lookup already matched; this keeps the check explicit.
        if key is None or not hmac.compare_digest(key.key_hash, h) or key.revoked_at_ms is not None:
            return None
        return key

    # -- orgs -----------------------------------------------------------------

    async def create_org(self, name: str) -> str:
        org = "org_" + secrets.token_hex(6)
        await self.store.insert(
            "orgs", pa.table({"org": [org], "name": [name], "created_at": _ts(_now_ms())})
        )
        return org

    async def find_org(self, name: str) -> str | None:
        rows = await self.store.rows(
            "SELECT org FROM orgs FINAL WHERE name = {name:String} ORDER BY created_at LIMIT 1", {"name": name}
        )
        return rows[0][0] if rows else None

    async def orgs(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self.store.rows("SELECT org, name FROM orgs FINAL ORDER BY created_at")]

    # -- keys -----------------------------------------------------------------

    async def create_key(self, org: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key; returns it and the secret, which is shown only this once."""
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        key = ApiKey(
            key_id="key_" + secrets.token_hex(8),
            org=org,
            name=name,
            prefix=secret[: len(KEY_PREFIX) + 4],
            created_at_ms=_now_ms(),
            revoked_at_ms=None,
            key_hash=hash_key(secret),
        )
        await self._write_key(key)
        self._by_hash.put(key.key_hash, key)
        return key, secret

    async def _write_key(self, key: ApiKey) -> None:
        revoked = pa.array([key.revoked_at_ms], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        await self.store.insert(
            "api_keys",
            pa.table(
                {
                    "key_id": [key.key_id],
                    "org": [key.org],
                    "name": [key.name],
                    "key_hash": [key.key_hash],
                    "prefix": [key.prefix],
                    "created_at": _ts(key.created_at_ms),
                    "revoked_at": revoked,
                    "version": pa.array([time.time_ns()], pa.uint64()),
                }
            ),
        )

    async def list_keys(self, org: str | None) -> list[ApiKey]:
        """Keys of one org (or of all orgs, for the operator's CLI)."""
        keys = [k for k in await self._all() if org is None or k.org == org]
        return sorted(keys, key=lambda k: k.created_at_ms)

    async def revoke_key(self, org: str | None, key_id: str) -> ApiKey | None:
        """Revoke a key of ``org`` (any org when None). None if there is no such key there."""
        for k in await self._all():
            if k.key_id == key_id and (org is None or k.org == org):
                if k.revoked_at_ms is not None:
                    return k
                revoked = ApiKey(k.key_id, k.org, k.name, k.prefix, k.created_at_ms, _now_ms(), k.key_hash)
                await self._write_key(revoked)
                self._by_hash.put(k.key_hash, revoked)
                return revoked
        return None
