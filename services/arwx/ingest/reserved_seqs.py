"""Seqs for writers whose clients send none (MLflow, ml-workbench, chachaml, ml-service...).

Invariants:

- A writer is (org, run_id, writer_id); its seqs are handed out from
  ``writer_seqs.next_seq`` upwards, without gaps except where noted below.
- A request is named by a digest: its ``Idempotency-Key`` if the client sent
  one, else a hash of what it logs (``request_digest``). ``reserve`` of a
  digest already seen (with the same point count) returns the SAME first seq
  again, so a retried request overwrites its own points (the store keeps one
  point per (run, writer, seq)) and is stored once. The same digest with a
  different count is a different request: it gets fresh seqs.
- A reservation is atomic: one catalog transaction holding the writer's row
  lock (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction locks the
  file), so processes sharing a catalog never hand out one seq twice.
- A fresh reservation whose write failed is given back (``release``) if
  nothing was reserved after it, so a failed request leaves no gap. Otherwise
  the seqs stay reserved for that digest: the client's retry fills them. A
  request the client never retries leaves a gap that the integrity receipt
  shows (the writer's total, ``total``, counts every reserved seq): nothing
  is hidden, and no other request ever reuses those seqs.
- A retry's reservation (not fresh) is never given back: its points may be
  stored already, and seqs handed out again would make a new request's points
  duplicates of them (the consumer keeps the first point of a seq).
- Values reach SQL only as parameters; every lookup is keyed by org first.

How an adapter uses it (one writer id per adapter, e.g. ``"workbench"``)::

    seqs = ReservedSeqs(catalog)
    digest = request_digest(request.headers.get("Idempotency-Key"), canonical_bytes_of_the_metrics)
    async with seqs.reserved(org, run_id, WRITER, digest, len(metrics)) as first:
        points = [Point(seq=first + i, step=m.step, key=m.key, value=m.value, ts=m.ts)
                  for i, m in enumerate(metrics)]
        await ingest.ingest(org, points, run_id, WRITER)   # arwx.ingest.service.IngestService
    ...
    # at the end of the run: the writer's total, for Runs.finish(writer_totals=...)
    await runs.finish(org, run_id, "finished", {WRITER: await seqs.total(org, run_id, WRITER)})

``reserved`` releases the reservation if the block raises (the write failed)
and keeps it otherwise. The arwx run must exist and be running before the
ingest (``Runs.create``); reserving does not check the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import writer_requests, writer_seqs

W, RQ = writer_seqs, writer_requests
MAX_DIGEST = 300  # the column's width


def request_digest(idempotency_key: str | None, body: bytes) -> str:
    """A request's name: ``k:<Idempotency-Key>`` if the client sent one, else ``h:<sha256 of body>``.

    ``body`` should be a canonical encoding of what the request logs (keys, values,
    steps, timestamps, in order), so a byte-identical retry gets the same digest."""
    if idempotency_key:
        key = f"k:{idempotency_key}"
        # A long key is hashed: the column is bounded, and two long keys stay apart.
        return key if len(key) <= MAX_DIGEST else "k#" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    return "h:" + hashlib.sha256(body).hexdigest()


class ReservedSeqs:
    """Seq reservations in the catalog; every method is one transaction."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @staticmethod
    async def _locked_next(conn: AsyncConnection, org: str, run_id: str, writer_id: str) -> int:
        """The writer's next seq, its row locked for the transaction (made at 0 on first use)."""
        where = (W.c.org == org) & (W.c.run_id == run_id) & (W.c.writer_id == writer_id)
        got = (await conn.execute(select(W.c.next_seq).where(where).with_for_update())).scalar()
        if got is not None:
            return int(got)
        try:
            async with conn.begin_nested():
                await conn.execute(W.insert().values(org=org, run_id=run_id, writer_id=writer_id, next_seq=0))
        except IntegrityError:
            pass  # another transaction made it first; the lock below waits for it
        return int((await conn.execute(select(W.c.next_seq).where(where).with_for_update())).scalar_one())

    async def reserve(self, org: str, run_id: str, writer_id: str, digest: str, n: int) -> tuple[int, bool]:
        """The first of ``n`` seqs for the request ``digest``, and whether they were reserved now
        (False: the request was seen before and gets its seqs again)."""
        if n < 0:
            raise ValueError(f"cannot reserve {n} seqs")
        rq = (RQ.c.org == org) & (RQ.c.run_id == run_id) & (RQ.c.writer_id == writer_id) & (RQ.c.digest == digest)
        async with self.catalog.begin() as conn:
            first = await self._locked_next(conn, org, run_id, writer_id)
            seen = (await conn.execute(select(RQ.c.first_seq, RQ.c.n).where(rq))).first()
            if seen is not None and int(seen.n) == n:
                return int(seen.first_seq), False
            await conn.execute(
                W.update()
                .where((W.c.org == org) & (W.c.run_id == run_id) & (W.c.writer_id == writer_id))
                .values(next_seq=first + n)
            )
            if seen is not None:
                await conn.execute(RQ.update().where(rq).values(first_seq=first, n=n))
            else:
                await conn.execute(RQ.insert().values(
                    org=org, run_id=run_id, writer_id=writer_id, digest=digest, first_seq=first, n=n))
            return first, True

    async def release(self, org: str, run_id: str, writer_id: str, digest: str, first: int, n: int) -> None:
        """Give back a reservation whose write failed, if it is still the last one (no gap left)."""
        async with self.catalog.begin() as conn:
            done = await conn.execute(
                W.update()
                .where((W.c.org == org) & (W.c.run_id == run_id) & (W.c.writer_id == writer_id)
                       & (W.c.next_seq == first + n))
                .values(next_seq=first)
            )
            if done.rowcount:
                await conn.execute(RQ.delete().where(
                    (RQ.c.org == org) & (RQ.c.run_id == run_id) & (RQ.c.writer_id == writer_id)
                    & (RQ.c.digest == digest)))

    @asynccontextmanager
    async def reserved(self, org: str, run_id: str, writer_id: str, digest: str, n: int) -> AsyncIterator[int]:
        """``reserve`` for the block (yields the first seq); if the block raises, ``release``
        a fresh reservation (a retry's is kept: see the module's invariants)."""
        first, fresh = await self.reserve(org, run_id, writer_id, digest, n)
        try:
            yield first
        except BaseException:
            if fresh:
                await self.release(org, run_id, writer_id, digest, first, n)
            raise

    async def total(self, org: str, run_id: str, writer_id: str) -> int:
        """How many seqs the writer has reserved (its ``writer_totals`` entry at finish)."""
        return (await self.totals(org, run_id)).get(writer_id, 0)

    async def totals_of(self, org: str, run_ids: list[str], writer_id: str) -> dict[str, int]:
        """The writer's reserved seqs in each of ``run_ids`` that it reserved in (one query per 500 runs)."""
        out: dict[str, int] = {}
        async with self.catalog.connect() as conn:
            for i in range(0, len(run_ids), 500):
                rows = await conn.execute(select(W.c.run_id, W.c.next_seq).where(
                    (W.c.org == org) & (W.c.writer_id == writer_id) & W.c.run_id.in_(run_ids[i:i + 500])))
                out.update({r.run_id: int(r.next_seq) for r in rows})
        return out

    async def totals(self, org: str, run_id: str) -> dict[str, int]:
        """Every reserving writer of the run and its next seq."""
        async with self.catalog.connect() as conn:
            rows = await conn.execute(
                select(W.c.writer_id, W.c.next_seq).where((W.c.org == org) & (W.c.run_id == run_id)))
            return {r.writer_id: int(r.next_seq) for r in rows}
