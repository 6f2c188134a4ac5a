"""The store interface: run SQL with parameters, insert an Arrow batch.

Both implementations run the same SQL text (ClickHouse query parameters such
as ``{run:String}``, never string formatting of values).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import pyarrow as pa

from arwx.errors import Unavailable

Params = dict[str, Any]

# Dedup tokens are built by the consumer from log coordinates only; checked so
# nothing else can ever reach the SETTINGS clause.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9:._,@-]{1,512}$")


class StoreUnavailable(Unavailable):
    """The store cannot do the work now (unreachable, disk full, read-only,
    out of memory): an outage, not bad data. Pause and retry; HTTP 503 with
    ``Retry-After``."""

    public_message = "the store is unavailable; retry later"


class StoreRejected(Exception):
    """The store is up and refuses this data (a value it cannot parse or
    convert): retrying the same rows fails the same way."""


def check_token(token: str) -> str:
    if not _TOKEN_RE.match(token):
        raise ValueError(f"bad insert dedup token {token!r}")
    return token


class Store(Protocol):
    """A ClickHouse engine: chDB in-process or a server.

    Errors: every method raises ``StoreUnavailable`` for an outage and
    ``StoreRejected`` for refused data (``arwx.store.errors.classify``);
    anything else is unclassified, and the consumer treats it as an outage.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def rows(self, sql: str, params: Params | None = None) -> list[tuple]:
        """Run a query and return its rows as tuples (numbers and strings only)."""
        ...

    async def arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run a query and return an Arrow table (for bulk reads)."""
        ...

    async def raw(self, sql: str, params: Params | None, fmt: str, settings: dict | None = None) -> bytes:
        """Run a query and return its result as the engine writes it in output
        format ``fmt`` (e.g. ``ArrowStream``, ``JSONEachRow``): bulk reads
        without a Python object per value. ``settings``: query-level
        settings (names and numbers from the code, never client input)."""
        ...

    async def command(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing."""
        ...

    async def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert a batch as one block; ``dedup_token`` makes a retry a no-op."""
        ...

    async def ping(self) -> bool: ...
