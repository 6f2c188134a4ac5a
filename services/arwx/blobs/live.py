"""Which blobs the catalog names: the "mark" of garbage collection.

Invariant: ``REFERENCES`` lists every catalog column that names a blob by its
SHA-256 (a test compares it with ``catalog/tables.py``, so a new table that
stores a SHA cannot be forgotten here). A blob is live for an organization
when one of that organization's rows names it; the collector never deletes a
live (org, sha) reference, nor bytes any organization's row names.

Memory stays bounded whatever the number of blobs: rows stream from the
catalog and the (org, sha) pairs go to an on-disk SQLite table (``LiveSet``),
looked up one batch at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Table, select

from arwx.blobs.base import SHA256_RE
from arwx.catalog import Catalog
from arwx.catalog.tables import (
    artifact_versions,
    compat_run_files,
    experiments,
    files,
    mlflow_artifacts,
    runs,
    workbench_artifacts,
)

# Pairs written to the live set per worker-thread call.
BATCH = 5000


def _scalar(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value


def _manifest(value: object) -> Iterator[str]:
    """An artifact version's files: ``[{path, sha256, size}, …]``."""
    for entry in value if isinstance(value, list) else ():
        if isinstance(entry, dict):
            yield from _scalar(entry.get("sha256"))


def _tree(value: object) -> Iterator[str]:
    """An experiment's code snapshot: ``{path: {sha256, size, mode}}``."""
    for entry in value.values() if isinstance(value, dict) else ():
        if isinstance(entry, dict):
            yield from _scalar(entry.get("sha256"))


def _fingerprint(value: object) -> Iterator[str]:
    """A run's ``{commit, diff_sha}``: a diff the SDK may have uploaded as a blob."""
    if isinstance(value, dict):
        yield from _scalar(value.get("diff_sha"))


@dataclass(frozen=True)
class Reference:
    """A catalog column naming blobs of the row's ``org``; ``shas`` reads them out of a value."""

    table: Table
    column: Column
    shas: Callable[[object], Iterable[str]] = _scalar


REFERENCES: tuple[Reference, ...] = (
    Reference(files, files.c.sha256),  # uploaded files; an external file's SHA names no blob, harmlessly
    Reference(artifact_versions, artifact_versions.c.manifest, _manifest),
    Reference(experiments, experiments.c.diff_sha),
    Reference(experiments, experiments.c.tree, _tree),
    Reference(mlflow_artifacts, mlflow_artifacts.c.sha),  # MLflow runs' and logged models' artifacts
    Reference(workbench_artifacts, workbench_artifacts.c.sha256),
    Reference(compat_run_files, compat_run_files.c.sha256),  # chachaml's and ml-service's run files
    Reference(runs, runs.c.fingerprint, _fingerprint),
)


async def referenced(catalog: Catalog) -> AsyncIterator[tuple[str, str]]:
    """Every (org, sha) some catalog row names, streamed (repeats possible)."""
    for ref in REFERENCES:
        org = ref.table.c.org
        async with catalog.connect() as conn:
            rows = await conn.stream(select(org, ref.column).where(ref.column.is_not(None)))
            async for o, value in rows:
                for sha in ref.shas(value):
                    if SHA256_RE.match(sha):
                        yield o, sha


class LiveSet:
    """(org, sha) pairs in an SQLite file: built once by ``mark``, then asked by batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE live (org TEXT, sha TEXT, PRIMARY KEY (org, sha)) WITHOUT ROWID")
        self._db.execute("CREATE INDEX live_sha ON live (sha)")
        self._db.execute("CREATE TABLE kept (sha TEXT PRIMARY KEY) WITHOUT ROWID")
        self.pairs = 0

    def close(self) -> None:
        self._db.close()

    async def mark(self, catalog: Catalog) -> int:
        """Fill the set from the catalog; the number of distinct pairs."""
        buf: list[tuple[str, str]] = []
        async for pair in referenced(catalog):
            buf.append(pair)
            if len(buf) >= BATCH:
                await asyncio.to_thread(self._add, buf)
                buf = []
        if buf:
            await asyncio.to_thread(self._add, buf)
        self.pairs = await asyncio.to_thread(lambda: self._db.execute("SELECT count() FROM live").fetchone()[0])
        return self.pairs

    def _add(self, pairs: list[tuple[str, str]]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO live VALUES (?, ?)", pairs)

    async def live_pairs(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of ``pairs`` a catalog row names."""
        def op() -> set[tuple[str, str]]:
            q = "SELECT 1 FROM live WHERE org = ? AND sha = ?"
            return {p for p in pairs if self._db.execute(q, p).fetchone() is not None}

        return await asyncio.to_thread(op)

    async def named_by_any_org(self, shas: list[str]) -> set[str]:
        """Those of ``shas`` some row of any organization names."""
        def op() -> set[str]:
            q = "SELECT 1 FROM live WHERE sha = ? LIMIT 1"
            return {s for s in shas if self._db.execute(q, (s,)).fetchone() is not None}

        return await asyncio.to_thread(op)

    async def keep(self, shas: Iterable[str]) -> None:
        """Remember that a reference to each of ``shas`` stays (their bytes must stay too)."""
        rows = [(s,) for s in shas]
        await asyncio.to_thread(self._db.executemany, "INSERT OR IGNORE INTO kept VALUES (?)", rows)

    async def kept(self, shas: list[str]) -> set[str]:
        def op() -> set[str]:
            q = "SELECT 1 FROM kept WHERE sha = ?"
            return {s for s in shas if self._db.execute(q, (s,)).fetchone() is not None}

        return await asyncio.to_thread(op)
