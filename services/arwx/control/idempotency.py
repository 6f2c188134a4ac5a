"""Idempotency keys: a re-sent create answers what the first one answered.

Invariant: for one (org, ``Idempotency-Key``) at most one request is ever
carried out, and every later request with the same key gets the stored
answer, also from another process (the row lives in the catalog). A key
reused for a different request (method, path or body differ) is a 409, and
so is a request that arrives while the first one is still being answered
(that one carries ``Retry-After``: retrying it is right, unlike a reused key).

A key is claimed (a row with status 0) before the work starts, in its own
transaction, so two processes racing on one key cannot both do the work.
Answers kept are those below 500: a server failure releases the claim and a
retry does the work again. Keys expire after ``TTL_MS``; a claim left behind
by a crashed process is taken over after ``STALE_CLAIM_MS``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from arwx.catalog import Catalog
from arwx.catalog.tables import idempotency_keys
from arwx.control.errors import Conflict, Invalid

HEADER = "Idempotency-Key"
TTL_MS = 24 * 3600 * 1000
STALE_CLAIM_MS = 60 * 1000
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of the first request with this key."""

    status: int
    body: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same request"."""
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _busy(key: str) -> Conflict:
    """The first request with this key is still being answered: a 409 a client may retry
    (``Retry-After`` tells it so; a key reused for another request has none)."""
    return Conflict(f"the request with {HEADER} {key!r} is still being answered; retry", headers={"Retry-After": "1"})


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise Invalid(f"{HEADER} must be 1 to 255 visible ASCII characters")
    return key


class IdempotencyKeys:
    """Claims, answers and releases of idempotency keys in the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def claim(self, org: str, key: str, fp: str) -> Replay | None:
        """None: the caller owns the key and must ``complete`` or ``release`` it.
        A ``Replay``: answer with it. ``Conflict``: another request uses the key."""
        check_key(key)
        where = (idempotency_keys.c.org == org) & (idempotency_keys.c.key == key)
        for _ in range(3):
            now = int(time.time() * 1000)
            try:
                async with self.catalog.begin() as conn:
                    row = (
                        await conn.execute(
                            select(
                                idempotency_keys.c.fingerprint, idempotency_keys.c.status,
                                idempotency_keys.c.response, idempotency_keys.c.created_at,
                            ).where(where)
                        )
                    ).first()
                    if row is not None:
                        expired = now - row.created_at > TTL_MS
                        abandoned = row.status == 0 and now - row.created_at > STALE_CLAIM_MS
                        if not (expired or abandoned):
                            if row.fingerprint != fp:
                                raise Conflict(f"{HEADER} {key!r} was already used for a different request")
                            if row.status == 0:
                                raise _busy(key)
                            return Replay(row.status, row.response or "")
                        await conn.execute(delete(idempotency_keys).where(where))
                    await conn.execute(
                        idempotency_keys.insert().values(
                            org=org, key=key, fingerprint=fp, status=0, response=None, created_at=now
                        )
                    )
                    return None
            except IntegrityError:
                continue  # another process claimed it between our read and insert: read theirs
        raise _busy(key)

    async def complete(self, org: str, key: str, status: int, body: str) -> None:
        """Keep the answer for replays."""
        async with self.catalog.begin() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where((idempotency_keys.c.org == org) & (idempotency_keys.c.key == key))
                .values(status=status, response=body)
            )

    async def release(self, org: str, key: str) -> None:
        """Forget the claim (the work failed on the server's side; a retry may do it)."""
        async with self.catalog.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    (idempotency_keys.c.org == org) & (idempotency_keys.c.key == key) & (idempotency_keys.c.status == 0)
                )
            )
