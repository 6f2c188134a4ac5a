"""A copy of the catalog's runs in ClickHouse, for people who query ClickHouse directly.

Grafana panels and ad-hoc SQL label and filter points by project and run
name with a join on ``runs`` (``docs/grafana.md``). The catalog is the truth;
this table (``schemas/clickhouse.sql``: ``runs``, ReplacingMergeTree on the
catalog's ``version``) follows it:

- the server writes a run here after every change it commits (create,
  finish), and
- at start, ``Runs.sync_mirror`` copies every run whose version the mirror
  lacks, which repairs writes lost to a ClickHouse outage or a crash.

Invariant: a mirror row is only ever a copy of a committed catalog row, and
re-writing one is harmless (same key and version collapse under FINAL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa

from arwx.store.base import Store

if TYPE_CHECKING:
    from arwx.runs import Run

def _ts(values: list[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


class RunMirror:
    """Writes runs into ClickHouse's ``runs`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, batch: list[Run]) -> None:
        if not batch:
            return
        enc = msgspec.json.encode
        await self.store.insert(
            "runs",
            pa.table(
                {
                    "org": [r.org for r in batch],
                    "run_id": [r.run_id for r in batch],
                    "project": [r.project for r in batch],
                    "name": [r.name for r in batch],
                    "status": [r.status for r in batch],
                    "config": [enc(r.config).decode() for r in batch],
                    "writer_ids": pa.array([r.writer_ids for r in batch], pa.list_(pa.string())),
                    "fingerprint": [enc(r.fingerprint).decode() for r in batch],
                    "created_at": _ts([r.created_at_ms for r in batch]),
                    "finished_at": _ts([r.finished_at_ms for r in batch]),
                    "version": pa.array([r.version for r in batch], pa.uint64()),
                    "tags": pa.array([r.tags for r in batch], pa.list_(pa.string())),
                    "notes": [r.notes for r in batch],
                    "deleted_at": _ts([r.deleted_at_ms for r in batch]),
                }
            ),
        )

    async def versions(self) -> dict[tuple[str, str], int]:
        """The newest version the mirror holds of each (org, run_id)."""
        rows = await self.store.rows("SELECT org, run_id, max(version) FROM runs GROUP BY org, run_id")
        return {(org, run_id): int(v) for org, run_id, v in rows}
