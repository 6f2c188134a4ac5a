"""Blobs in a directory (the embedded default): ``<root>/sha256/ab/cd/<sha>``.

Bytes go to a temporary file in ``<root>/tmp`` while they are hashed, are
fsynced, and only then renamed to their address (a rename is atomic, so a
reader sees the whole blob or none; two uploads of the same bytes rename
identical files onto one name). A cut-off upload removes its temporary file;
one left by a crash is never visible and is swept at the next start. File I/O
runs off the event loop, a bounded chunk at a time. A file's modification
time is its age for garbage collection: storing bytes already there, or a
reference already there, touches the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

from arwx.blobs.base import (
    REFRESH_S,
    SHA256_RE,
    Blob,
    BlobInfo,
    BlobStore,
    Hasher,
    check_org,
    check_sha,
    content_key,
    ref_key,
)

# Bytes gathered before one write call in a worker thread.
WRITE_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
# A temporary file this old at start belongs to an upload that died with its process.
STALE_TMP_S = 3600.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileBlob(Blob):
    def __init__(self, f, size: int) -> None:  # noqa: ANN001
        self._f = f
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.to_thread(self._f.read, READ_CHUNK)
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        self._f.close()


class DirectoryBlobStore(BlobStore):
    """Content-addressed files under ``root``; per-org references as empty files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - STALE_TMP_S
        for p in self._tmp.iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                pass

    async def _put_content(self, chunks: AsyncIterable[bytes], expected_sha: str | None) -> BlobInfo:
        hasher = Hasher(expected_sha)
        tmp = self._tmp / uuid.uuid4().hex
        f = await asyncio.to_thread(open, tmp, "xb")

        def write(buf: bytes) -> None:
            hasher.update(buf)  # hashlib releases the GIL on big buffers: hash here, off the loop
            f.write(buf)

        try:
            try:
                buf = bytearray()
                async for chunk in chunks:
                    buf += chunk
                    if len(buf) >= WRITE_CHUNK:
                        await asyncio.to_thread(write, bytes(buf))
                        buf.clear()
                if buf:
                    await asyncio.to_thread(write, bytes(buf))
                await asyncio.to_thread(lambda: (f.flush(), os.fsync(f.fileno())))
            finally:
                f.close()
            info = hasher.finish()
            await asyncio.to_thread(self._publish, tmp, info.sha)
            return info
        except BaseException:
            # Cut off, mismatched or failed: the temporary file goes, nothing was visible.
            tmp.unlink(missing_ok=True)
            raise

    def _publish(self, tmp: Path, sha: str) -> None:
        final = self.root / content_key(sha)
        try:
            os.utime(final)  # stored already: used again, young for the collector
            tmp.unlink()  # identical bytes are kept once
            return
        except FileNotFoundError:
            pass  # new (or collected just now): ours become the stored copy
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    async def _open_content(self, sha: str) -> Blob | None:
        def op() -> Blob | None:
            try:
                f = open(self.root / content_key(sha), "rb")  # noqa: SIM115 (closed by Blob.close)
            except FileNotFoundError:
                return None
            return _FileBlob(f, os.fstat(f.fileno()).st_size)

        return await asyncio.to_thread(op)

    async def _content_size(self, sha: str) -> int | None:
        def op() -> int | None:
            try:
                return (self.root / content_key(sha)).stat().st_size
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(op)

    async def _add_ref(self, org: str, sha: str) -> None:
        def op() -> None:
            ref = self.root / ref_key(org, sha)
            try:
                os.utime(ref)  # there already: used again, young for the collector
                return
            except FileNotFoundError:
                pass
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.touch()
            _fsync_dir(ref.parent)

        await asyncio.to_thread(op)

    async def _has_ref(self, org: str, sha: str) -> bool:
        return await asyncio.to_thread((self.root / ref_key(org, sha)).exists)

    async def missing(self, org: str, shas: Sequence[str]) -> list[str]:
        # The same rule as the base class, in one worker-thread call rather than two per sha.
        check_org(org)
        wanted = list(dict.fromkeys(check_sha(s) for s in shas))

        stale = time.time() - REFRESH_S

        def op() -> list[str]:
            out = []
            for s in wanted:
                ref = self.root / ref_key(org, s)
                mtime = _mtime(ref)
                if mtime is None:
                    out.append(s)
                elif mtime < stale:
                    with contextlib.suppress(FileNotFoundError):
                        os.utime(ref)  # the caller is about to name it: young again for the collector
            return out

        return await asyncio.to_thread(op)

    # Garbage collection: one worker-thread listing per first-level shard, so a batch holds
    # about 1/256 of the store whatever its size.

    async def _list_refs(self) -> AsyncIterator[list[tuple[str, str, float]]]:
        for org_dir in await asyncio.to_thread(_subdirs, self.root / "refs"):
            for shard in await asyncio.to_thread(_subdirs, org_dir):
                batch = await asyncio.to_thread(_files, shard)
                if batch:
                    yield [(org_dir.name, name, mtime) for name, mtime, _ in batch if SHA256_RE.match(name)]

    async def _list_contents(self) -> AsyncIterator[list[tuple[str, float, int]]]:
        for shard in await asyncio.to_thread(_subdirs, self.root / "sha256"):
            batch = await asyncio.to_thread(
                lambda shard=shard: [f for sub in _subdirs(shard) for f in _files(sub)]
            )
            if batch:
                yield [(name, mtime, size) for name, mtime, size in batch if SHA256_RE.match(name)]

    async def _list_temporaries(self) -> AsyncIterator[list[tuple[str, float]]]:
        batch = await asyncio.to_thread(_files, self._tmp)
        if batch:
            yield [(name, mtime) for name, mtime, _ in batch]

    async def _ref_mtime(self, org: str, sha: str) -> float | None:
        return await asyncio.to_thread(_mtime, self.root / ref_key(org, sha))

    async def _content_mtime(self, sha: str) -> float | None:
        return await asyncio.to_thread(_mtime, self.root / content_key(sha))

    async def _delete_ref(self, org: str, sha: str) -> None:
        await asyncio.to_thread((self.root / ref_key(org, sha)).unlink, missing_ok=True)

    async def _delete_content(self, sha: str) -> None:
        await asyncio.to_thread((self.root / content_key(sha)).unlink, missing_ok=True)

    async def _delete_temporary(self, key: str) -> None:
        await asyncio.to_thread((self._tmp / key).unlink, missing_ok=True)


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as it:
            return sorted(Path(e.path) for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _files(path: Path) -> list[tuple[str, float, int]]:
    """(name, modified, size) of the regular files in ``path``; one removed meanwhile is skipped."""
    out = []
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        out.append((e.name, st.st_mtime, st.st_size))
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return out


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None
