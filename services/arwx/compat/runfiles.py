"""Files attached to a run by name (chachaml's run artifacts, ml-service's ``log-artifact``).

Invariants:

- The bytes live in the blob store, addressed by SHA-256 (``BlobStore.put``
  hashes them as they stream in); the row naming them is written only after
  the blob is durable, so a row always names bytes its org can read.
- (org, run, name) names one file: logging the name again points it at the
  new bytes (the old bytes stay, content-addressed, for whatever else names
  them). A re-sent upload of the same bytes changes nothing but the time.
- Every lookup is by org first: another org's run has no files.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy import select

from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.catalog.tables import compat_run_files

F = compat_run_files


@dataclass(frozen=True, slots=True)
class RunFile:
    run_id: str
    name: str
    sha256: str
    size: int
    content_type: str
    created_at_ms: int


def _file(r) -> RunFile:  # noqa: ANN001 - a Row
    return RunFile(r.run_id, r.name, r.sha256, int(r.size), r.content_type, int(r.created_at))


class RunFiles:
    """Named files of runs, in the catalog (names) and the blob store (bytes)."""

    def __init__(self, catalog: Catalog, blobs: BlobStore) -> None:
        self.catalog = catalog
        self.blobs = blobs

    async def put(self, org: str, run_id: str, name: str, chunks: AsyncIterable[bytes], content_type: str) -> RunFile:
        """Store the bytes, then name them ``name`` on the run (the caller checked the run is the org's)."""
        info = await self.blobs.put(org, chunks)
        f = RunFile(run_id, name, info.sha, info.size, content_type, int(time.time() * 1000))
        where = (F.c.org == org) & (F.c.run_id == run_id) & (F.c.name == name)
        async with self.catalog.begin() as conn:
            await conn.execute(F.delete().where(where))
            await conn.execute(F.insert().values(org=org, run_id=run_id, name=name, sha256=f.sha256, size=f.size,
                                                 content_type=content_type, created_at=f.created_at_ms))
        return f

    async def get(self, org: str, run_id: str, name: str) -> RunFile | None:
        async with self.catalog.connect() as conn:
            r = (await conn.execute(select(F).where(
                (F.c.org == org) & (F.c.run_id == run_id) & (F.c.name == name)))).first()
        return _file(r) if r else None

    async def list(self, org: str, run_id: str) -> list[RunFile]:
        """The run's files, oldest first (then by name)."""
        async with self.catalog.connect() as conn:
            rows = await conn.execute(select(F).where((F.c.org == org) & (F.c.run_id == run_id))
                                      .order_by(F.c.created_at, F.c.name))
            return [_file(r) for r in rows]
