"""Files: external ones registered by URI and content hash, and uploaded ones held in the blob store.

Invariant: a file's id is derived from what was registered (uri or "uploaded",
SHA-256, size, name), so registering the same file again names the same row
and changes nothing: a re-sent request is harmless without an
Idempotency-Key. Uploaded bytes go through ``BlobStore.put``, which hashes
them itself; the org's blob reference is written before the file row, so a
file row always names bytes its org can read (or, external, none at all).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.catalog.tables import files
from arwx.errors import NotFound

UPLOAD_NAME = "file"


@dataclass(frozen=True, slots=True)
class File:
    """A registered file. ``uri`` is None for uploaded bytes (they are blob ``sha256``)."""

    id: str
    name: str
    uri: str | None
    sha256: str
    size: int
    created_at_ms: int

    def public(self) -> dict:
        return {
            "id": self.id, "name": self.name, "uri": self.uri, "sha256": self.sha256, "size": self.size,
            "stored": self.uri is None, "created_at": self.created_at_ms,
        }


def file_id(uri: str | None, sha256: str, size: int, name: str) -> str:
    """The id of a registration: the same registration, the same id."""
    h = hashlib.sha256("\0".join((uri or "uploaded", sha256, str(size), name)).encode())
    return "file_" + h.hexdigest()[:32]


def default_name(uri: str) -> str:
    """The last path segment of ``uri`` (what a download would be called)."""
    tail = uri.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or UPLOAD_NAME


def _row_file(row) -> File:  # noqa: ANN001 - a Row
    return File(row.file_id, row.name, row.uri, row.sha256, row.size, row.created_at)


class Files:
    """File registrations of every org, in the catalog."""

    def __init__(self, catalog: Catalog, blobs: BlobStore) -> None:
        self.catalog = catalog
        self.blobs = blobs

    async def register(self, org: str, key_id: str, uri: str, sha256: str, size: int, name: str | None) -> tuple[File, bool]:
        """Register an external file; (the file, whether it is new)."""
        return await self._insert(org, key_id, uri, sha256, size, name or default_name(uri))

    async def upload(self, org: str, key_id: str, chunks: AsyncIterable[bytes], claimed_sha: str | None,
                     name: str | None) -> tuple[File, bool]:
        """Store the streamed bytes as a blob of ``org`` (hashed here) and register them as a file."""
        info = await self.blobs.put(org, chunks, claimed_sha)
        return await self._insert(org, key_id, None, info.sha, info.size, name or UPLOAD_NAME)

    async def get(self, org: str, fid: str) -> File:
        async with self.catalog.connect() as conn:
            row = (await conn.execute(select(files).where(files.c.org == org, files.c.file_id == fid))).first()
        if row is None:
            raise NotFound(f"unknown file {fid}")
        return _row_file(row)

    async def registered(self, org: str, pairs: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Those of (sha256, size) that ``org`` registered as a file."""
        wanted = set(pairs)
        if not wanted:
            return set()
        shas = sorted({s for s, _ in wanted})
        found: set[tuple[str, int]] = set()
        async with self.catalog.connect() as conn:
            for i in range(0, len(shas), 500):  # bounded IN lists
                q = select(files.c.sha256, files.c.size).where(files.c.org == org, files.c.sha256.in_(shas[i:i + 500]))
                found |= {(r.sha256, r.size) for r in await conn.execute(q)}
        return wanted & found

    async def _insert(self, org: str, key_id: str, uri: str | None, sha256: str, size: int, name: str) -> tuple[File, bool]:
        fid = file_id(uri, sha256, size, name)
        now = int(time.time() * 1000)
        try:
            async with self.catalog.begin() as conn:
                row = (await conn.execute(select(files).where(files.c.org == org, files.c.file_id == fid))).first()
                if row is not None:
                    return _row_file(row), False
                await conn.execute(files.insert().values(
                    org=org, file_id=fid, name=name, uri=uri, sha256=sha256, size=size, created_at=now,
                    created_by=key_id,
                ))
        except IntegrityError:
            # The same registration committed by another request between our read and insert.
            return await self.get(org, fid), False
        return File(fid, name, uri, sha256, size, now), True
