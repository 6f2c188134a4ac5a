"""The blob store interface: bytes by SHA-256, with a per-organization view.

Invariants, for every implementation:

- A blob's address is the SHA-256 of its bytes, computed here while the bytes
  stream in; a claimed SHA that does not match refuses the upload and leaves
  nothing stored. Identical bytes are stored once, also when uploaded at the
  same time.
- A blob becomes visible only complete: an upload that fails or is cut off
  leaves nothing a reader can see. A missing blob opens as ``None``, never as
  a partial body.
- Addresses are global, visibility is not: an organization sees a blob only
  after it uploaded those bytes itself (proving it has them), through a
  zero-byte reference per (org, sha) kept next to the bytes. Another org's
  blob looks exactly like a missing one.
- A reference is written only once its bytes are durable, and bytes are never
  removed while a reference names them: a reference alone answers "present"
  (one request per SHA against an object store, not two).
- Memory stays bounded: bytes move in chunks, never whole.
- Garbage collection (``arwx.blobs.gc``) removes only what is older than its
  grace period, so every use refreshes a blob's age: ``put`` refreshes the
  reference and the bytes, and ``missing`` refreshes the references it
  answers "present" for when they are older than ``REFRESH_S`` (a client that
  skips an upload because the blob is present registers it within the grace
  period, and it is not collected in between).

Subclasses provide the storage primitives (``_put_content`` … ``_has_ref``);
this class adds the tenancy rule on top, once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

from arwx.store.base import StoreUnavailable
from arwx.wire import BadInput

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Org ids become path segments: keep them to a safe alphabet.
_ORG_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
# Concurrent reference checks for one ``missing`` call (object stores answer each by a request).
MISSING_CONCURRENCY = 32
# A reference or blob touched less than this long ago is not touched again when used (an
# object store pays a request per touch). Garbage collection's grace period must exceed it.
REFRESH_S = 600.0


class BadSha(BadInput):
    """A string that is not a SHA-256 in lowercase hex (64 characters)."""


class HashMismatch(BadInput):
    """The bytes do not hash to the claimed SHA-256; nothing was stored."""

    def __init__(self, claimed: str, actual: str) -> None:
        super().__init__(f"the bytes hash to sha256 {actual}, not the claimed {claimed}; nothing was stored")
        self.claimed = claimed
        self.actual = actual


class BlobStoreUnavailable(StoreUnavailable):
    """The blob store cannot be reached (an outage, not bad input): 503, retry later."""


def check_sha(sha: str) -> str:
    """``sha`` if it is 64 lowercase hex characters, else ``BadSha`` naming it."""
    if not isinstance(sha, str) or not SHA256_RE.match(sha):
        raise BadSha(f"{sha!r} is not a SHA-256 (64 lowercase hex characters)")
    return sha


def check_org(org: str) -> str:
    if not _ORG_RE.match(org) or org in (".", ".."):
        raise ValueError(f"org id {org!r} cannot name a blob reference")
    return org


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its address and its length in bytes."""

    sha: str
    size: int


class Hasher:
    """SHA-256 and length of bytes as they pass; ``finish`` checks the claim."""

    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def finish(self) -> BlobInfo:
        """The blob's address and size; ``HashMismatch`` if a claimed SHA differs."""
        sha = self._h.hexdigest()
        if self.expected is not None and sha != self.expected:
            raise HashMismatch(self.expected, sha)
        return BlobInfo(sha, self.size)


class Blob(ABC):
    """An open blob: its size is known before the first byte is sent."""

    size: int

    @abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The blob's bytes, in order, in bounded chunks."""

    @abstractmethod
    async def close(self) -> None:
        """Release what ``open`` took (a file, a connection)."""


class BlobStore(ABC):
    """Content-addressed bytes: a directory (embedded) or S3-compatible object storage."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect / prepare; called once before use."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    async def put(self, org: str, chunks: AsyncIterable[bytes], expected_sha: str | None = None) -> BlobInfo:
        """Store the streamed bytes for ``org`` and return their SHA-256 and size.

        With ``expected_sha``, bytes hashing to anything else raise ``HashMismatch``
        and nothing is stored. The whole stream is always read and hashed, also when
        the bytes are stored already: an org gains a reference only by proving it
        has the bytes.
        """
        check_org(org)
        if expected_sha is not None:
            check_sha(expected_sha)
        info = await self._put_content(chunks, expected_sha)
        await self._add_ref(org, info.sha)
        return info

    async def open(self, org: str, sha: str) -> Blob | None:
        """The blob for reading, or ``None`` if it is absent or not ``org``'s."""
        check_org(org)
        check_sha(sha)
        if not await self._has_ref(org, sha):
            return None
        return await self._open_content(sha)

    async def size(self, org: str, sha: str) -> int | None:
        """The blob's size in bytes, or ``None`` if it is absent or not ``org``'s."""
        check_org(org)
        check_sha(sha)
        if not await self._has_ref(org, sha):
            return None
        return await self._content_size(sha)

    async def missing(self, org: str, shas: Sequence[str]) -> list[str]:
        """Those of ``shas`` that ``org`` cannot read, in the given order, without repeats."""
        check_org(org)
        wanted = list(dict.fromkeys(check_sha(s) for s in shas))
        gate = asyncio.Semaphore(MISSING_CONCURRENCY)
        stale = time.time() - REFRESH_S

        async def present(sha: str) -> bool:
            async with gate:
                mtime = await self._ref_mtime(org, sha)
                if mtime is None:
                    return False
                if mtime < stale:  # the caller is about to name it: young again for the collector
                    await self._add_ref(org, sha)
                return True

        found = await asyncio.gather(*(present(s) for s in wanted))
        return [s for s, ok in zip(wanted, found) if not ok]

    # Storage primitives: global content, plus one reference per (org, sha).

    @abstractmethod
    async def _put_content(self, chunks: AsyncIterable[bytes], expected_sha: str | None) -> BlobInfo:
        """Hash and store the bytes under their SHA-256, visible only once complete and checked."""

    @abstractmethod
    async def _open_content(self, sha: str) -> Blob | None: ...

    @abstractmethod
    async def _content_size(self, sha: str) -> int | None: ...

    @abstractmethod
    async def _add_ref(self, org: str, sha: str) -> None:
        """Record, durably, that ``org`` may read ``sha`` (after the bytes are stored); an
        existing reference gets a new modification time."""

    @abstractmethod
    async def _has_ref(self, org: str, sha: str) -> bool: ...

    # Garbage collection's primitives (``arwx.blobs.gc``): list, age, delete. Listing streams
    # in bounded batches; times are seconds since the epoch; deleting what is gone is a no-op.

    @abstractmethod
    def _list_refs(self) -> AsyncIterator[list[tuple[str, str, float]]]:
        """Every reference as (org, sha, modified), in batches."""

    @abstractmethod
    def _list_contents(self) -> AsyncIterator[list[tuple[str, float, int]]]:
        """Every stored blob as (sha, modified, size), in batches."""

    @abstractmethod
    def _list_temporaries(self) -> AsyncIterator[list[tuple[str, float]]]:
        """Every temporary upload left in the store as (key, modified), in batches."""

    @abstractmethod
    async def _ref_mtime(self, org: str, sha: str) -> float | None: ...

    @abstractmethod
    async def _content_mtime(self, sha: str) -> float | None: ...

    @abstractmethod
    async def _delete_ref(self, org: str, sha: str) -> None: ...

    @abstractmethod
    async def _delete_content(self, sha: str) -> None: ...

    @abstractmethod
    async def _delete_temporary(self, key: str) -> None: ...


def content_key(sha: str) -> str:
    """Where the bytes of ``sha`` live, sharded two levels deep (``ab/cd/abcd…``)."""
    return f"sha256/{sha[:2]}/{sha[2:4]}/{sha}"


def ref_key(org: str, sha: str) -> str:
    """The zero-byte marker saying ``org`` may read ``sha``."""
    return f"refs/{org}/{sha[:2]}/{sha}"
