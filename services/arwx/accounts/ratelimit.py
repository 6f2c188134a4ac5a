"""Sign-in attempts, limited per account and per client address, across every process.

Invariant: once an account (an email, known or not) or an address has
failed ``max_failures`` sign-ins within ``window_s``, every attempt for it is
refused (429 with ``Retry-After``) until the oldest of those failures leaves
the window; a correct password does not get through meanwhile, so guessing
gains nothing from the refusals. A success clears the account's failures,
not the address's.

The failures live in the catalog (``login_failures``), which every gateway
and query process of a server shares (SQLite or PostgreSQL), so the budget is
the same however many processes answer sign-ins. A key is stored as its
SHA-256 only: people type passwords into the email field. Each failure
deletes every row that has left the window, so the table holds at most the
failures of one window.

Two processes checking the same key at the same instant may both let one
more attempt through (check, then record): the excess is bounded by the
number of concurrent requests, not multiplied by the number of processes.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import delete, select

from arwx.catalog import Catalog
from arwx.catalog.tables import login_failures


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _ms(now: float | None) -> int:
    # Wall-clock time: several processes (several hosts) compare the same rows.
    return int((time.time() if now is None else now) * 1000)


class AttemptLimiter:
    """Failures per key (``"email:…"``, ``"addr:…"``) in a sliding window, kept in the catalog."""

    def __init__(self, catalog: Catalog, max_failures: int, window_s: float) -> None:
        self.catalog = catalog
        self.max_failures = max_failures
        self.window_ms = int(window_s * 1000)

    async def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again; 0 when it may now. ``now``: epoch seconds (tests)."""
        now_ms = _ms(now)
        query = (
            select(login_failures.c.at)
            .where((login_failures.c.key_hash == _key_hash(key)) & (login_failures.c.at > now_ms - self.window_ms))
            .order_by(login_failures.c.at.desc())
            .limit(self.max_failures)
        )
        async with self.catalog.connect() as conn:
            recent = [row[0] for row in await conn.execute(query)]
        if len(recent) < self.max_failures:
            return 0.0
        # The max_failures-th newest failure must leave the window first.
        return max(0.0, (recent[-1] + self.window_ms - now_ms) / 1000)

    async def failed(self, key: str, now: float | None = None) -> None:
        """Record a failed attempt for ``key`` (and forget every failure that left the window)."""
        now_ms = _ms(now)
        async with self.catalog.begin() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.at <= now_ms - self.window_ms))
            await conn.execute(login_failures.insert().values(key_hash=_key_hash(key), at=now_ms))

    async def clear(self, key: str) -> None:
        """Forget ``key``'s failures (a successful sign-in of that account)."""
        async with self.catalog.begin() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.key_hash == _key_hash(key)))
