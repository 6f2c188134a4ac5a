"""Blob garbage collection: delete what no catalog row names any more.

Invariants:

- Nothing younger than the grace period goes. Age is the modification time
  of the reference or the bytes, and every use makes them young again
  (``BlobStore.put``, ``BlobStore.missing``; see ``arwx.blobs.base``): a blob
  being uploaded now, or one a client has just been told is present and is
  about to name in a registration, is never collected, as long as the client
  registers it within the grace period less ``REFRESH_S``.
- A reference (org, sha) goes only when no row of that org names the sha
  (``arwx.blobs.live``, read after the cutoff is fixed) and its age, read
  again just before the delete, is past the grace period.
- Bytes go only when no reference to them is left (of any organization) and
  no catalog row of any organization names them: bytes are never removed
  while a reference names them.
- Only organizations the catalog knows are collected. References of another
  one (a second deployment sharing the bucket, or a catalog given by mistake)
  are left alone, and so are the bytes they name; an empty catalog is refused.
- Several collectors may run at once (two servers, a cron job and a server):
  each deletes only what all of them agree is garbage, and deleting what is
  gone already is a no-op.
- Memory stays bounded: listings and catalog rows stream in batches; the live
  set is an on-disk SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select

from arwx import metrics
from arwx.blobs.base import REFRESH_S, BlobStore
from arwx.blobs.live import LiveSet
from arwx.catalog import Catalog
from arwx.catalog.tables import orgs

log = logging.getLogger("arwx.blobs.gc")

# Concurrent re-checks and deletes (an object store answers each by a request).
CONCURRENCY = 16
DEFAULT_GRACE_S = 86400.0


class GcRefused(RuntimeError):
    """Collecting now could delete what is in use (an empty catalog: the wrong one?)."""


@dataclass
class GcReport:
    """What one collection found and did (``dry_run``: would do)."""

    dry_run: bool
    grace_s: float
    live_pairs: int = 0  # distinct (org, sha) the catalog names
    refs_kept: int = 0
    refs_deleted: int = 0
    refs_foreign: int = 0  # of organizations this catalog does not know: left alone
    blobs_kept: int = 0
    blobs_deleted: int = 0
    bytes_deleted: int = 0
    temporaries_deleted: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


async def collect(
    blobs: BlobStore, catalog: Catalog, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
    now: float | None = None, workdir: Path | None = None,
) -> GcReport:
    """One collection over the whole store. ``now`` (seconds since the epoch) is the clock
    the ages are measured against (tests move it forward instead of waiting)."""
    if grace_s < 0:
        raise ValueError("grace_s must be >= 0")
    started = time.monotonic()
    cutoff = (time.time() if now is None else now) - grace_s
    report = GcReport(dry_run=dry_run, grace_s=grace_s)
    known = await _orgs(catalog)
    if not known:
        raise GcRefused(f"the catalog {catalog.display} has no organization: is it the right one? nothing was deleted")
    with tempfile.TemporaryDirectory(prefix="arwx-gc-", dir=workdir) as tmp:
        live = LiveSet(Path(tmp) / "live.sqlite")
        try:
            # Marked after the cutoff is fixed: a row committed before the mark is seen; one
            # committed after it names a blob used (so made young) after the cutoff.
            report.live_pairs = await live.mark(catalog)
            await _sweep_refs(blobs, live, known, cutoff, report)
            await _sweep_contents(blobs, live, cutoff, report)
            await _sweep_temporaries(blobs, cutoff, report)
        finally:
            live.close()
    report.seconds = round(time.monotonic() - started, 3)
    log.info("blob garbage collection", extra={"report": report.as_dict()})
    if not dry_run:
        metrics.BLOB_GC_DELETED.labels("refs").inc(report.refs_deleted)
        metrics.BLOB_GC_DELETED.labels("blobs").inc(report.blobs_deleted)
        metrics.BLOB_GC_DELETED.labels("temporaries").inc(report.temporaries_deleted)
        metrics.BLOB_GC_DELETED_BYTES.inc(report.bytes_deleted)
    return report


async def _orgs(catalog: Catalog) -> set[str]:
    async with catalog.connect() as conn:
        return {r[0] for r in await conn.execute(select(orgs.c.org))}


async def _each(items: list, fn) -> list:  # noqa: ANN001 - an async callable
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item):  # noqa: ANN001, ANN202
        async with gate:
            return await fn(item)

    return await asyncio.gather(*(one(i) for i in items))


async def _sweep_refs(blobs: BlobStore, live: LiveSet, known: set[str], cutoff: float, report: GcReport) -> None:
    async for batch in blobs._list_refs():
        keep: set[str] = set()
        candidates = []
        foreign = [(o, s) for o, s, _ in batch if o not in known]
        report.refs_foreign += len(foreign)
        keep.update(s for _, s in foreign)
        ours = [(o, s, m) for o, s, m in batch if o in known]
        named = await live.live_pairs([(o, s) for o, s, _ in ours])
        for o, s, mtime in ours:
            if (o, s) in named or mtime >= cutoff:
                keep.add(s)
                report.refs_kept += 1
            else:
                candidates.append((o, s))

        async def sweep(pair: tuple[str, str]) -> bool:
            org, sha = pair
            mtime = await blobs._ref_mtime(org, sha)  # again: it may have been used since the listing
            if mtime is None:
                return True
            if mtime >= cutoff:
                return False
            if not report.dry_run:
                await blobs._delete_ref(org, sha)
            return True

        for (_, sha), gone in zip(candidates, await _each(candidates, sweep)):
            if gone:
                report.refs_deleted += 1
            else:
                keep.add(sha)
                report.refs_kept += 1
        await live.keep(keep)


async def _sweep_contents(blobs: BlobStore, live: LiveSet, cutoff: float, report: GcReport) -> None:
    async for batch in blobs._list_contents():
        shas = [s for s, _, _ in batch]
        referenced = await live.kept(shas) | await live.named_by_any_org(shas)
        candidates = []
        for sha, mtime, size in batch:
            if sha in referenced or mtime >= cutoff:
                report.blobs_kept += 1
            else:
                candidates.append((sha, size))

        async def sweep(item: tuple[str, int]) -> bool:
            sha, _ = item
            mtime = await blobs._content_mtime(sha)  # again: stored again since the listing?
            if mtime is None:
                return False  # someone else collected it: not ours to count
            if mtime >= cutoff:
                return False
            if not report.dry_run:
                await blobs._delete_content(sha)
            return True

        for (_, size), gone in zip(candidates, await _each(candidates, sweep)):
            if gone:
                report.blobs_deleted += 1
                report.bytes_deleted += size
            else:
                report.blobs_kept += 1


async def _sweep_temporaries(blobs: BlobStore, cutoff: float, report: GcReport) -> None:
    """Uploads that died with their process (an upload in progress is younger than any grace)."""
    cutoff = min(cutoff, time.time() - REFRESH_S)
    async for batch in blobs._list_temporaries():
        for key, mtime in batch:
            if mtime < cutoff:
                if not report.dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        await blobs._delete_temporary(key)
                report.temporaries_deleted += 1


class PeriodicGc:
    """Background work of a query service: one collection every ``interval_s`` (the first one
    ``interval_s`` after start). A failed collection is logged and tried again next time."""

    paused: str | None = None  # never set: collection failing delays it, reads go on

    def __init__(self, blobs: BlobStore, catalog: Catalog, interval_s: float, grace_s: float) -> None:
        self.blobs = blobs
        self.catalog = catalog
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.last: GcReport | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="arwx-blob-gc")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.last = await collect(self.blobs, self.catalog, self.grace_s)
                metrics.BLOB_GC_RUNS.labels("ok").inc()
            except Exception:  # noqa: BLE001 - an outage delays collection, never stops the process
                metrics.BLOB_GC_RUNS.labels("failed").inc()
                log.warning("blob garbage collection failed; trying again in %.0f s", self.interval_s, exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
