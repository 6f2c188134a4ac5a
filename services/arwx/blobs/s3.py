"""Blobs in S3-compatible object storage (distributed deployments), through ``obstore``.

``s3://bucket/prefix``; credentials, region and endpoint come from the standard
AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``). Requests are path-style, so any
S3-compatible server works; plain ``http://`` endpoints are allowed.

How an upload stays invisible until it is whole and checked:

- With a claimed SHA, the bytes stream to their final key as a multipart
  upload, hashed on the way; the multipart upload is completed only if the
  hash matches (the stream raises at its end otherwise, and obstore aborts the
  upload). An object store shows a multipart object only once completed.
- Without a claim, the address is known only at the end: the bytes go to
  ``tmp/<uuid>``, then are copied server-side to their address and the
  temporary object is deleted (S3 copies up to 5 GiB in one request; clients
  that can should claim the SHA, as the SDK does).
- Bytes already stored are read and hashed, not uploaded again, unless they
  were stored more than ``REFRESH_S`` ago: then they are written again, since
  an object's modification time is its age for garbage collection and S3 has
  no "touch" (references, empty objects, are simply written again).

Memory stays bounded by ``PART_SIZE`` x ``PART_CONCURRENCY`` per upload and
``READ_CHUNK`` per download.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from datetime import timedelta
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from arwx.blobs.base import (
    REFRESH_S,
    SHA256_RE,
    Blob,
    BlobInfo,
    BlobStore,
    BlobStoreUnavailable,
    Hasher,
    content_key,
    ref_key,
)

PART_SIZE = 8 << 20
PART_CONCURRENCY = 4
READ_CHUNK = 1 << 20
# Keys per listing batch (S3 answers at most 1,000 per request).
LIST_CHUNK = 1000
# A whole request may take long (a slow client downloading gigabytes); a stalled read may not.
CLIENT_OPTIONS = {"timeout": "24h", "read_timeout": "60s", "connect_timeout": "5s"}
# Retry a failing request briefly, then answer 503: a client waits seconds, not minutes, in an outage.
RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=15)}


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """obstore's errors (connection, auth, server) as an outage: the client gets a 503 and retries."""
    try:
        yield
    except (BaseError, OSError) as e:
        raise BlobStoreUnavailable(f"object store: {e}") from e


class _ObjectBlob(Blob):
    def __init__(self, result, size: int) -> None:  # noqa: ANN001
        self._result = result
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        async for buf in self._result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(buf)

    async def close(self) -> None:
        self._result = None  # obstore releases the connection with the stream


class S3BlobStore(BlobStore):
    """Content-addressed objects under ``prefix`` in ``bucket``; per-org references as empty objects."""

    def __init__(self, store: S3Store) -> None:
        self._store = store

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> S3BlobStore:
        """A store for ``s3://bucket/prefix``, configured from the AWS variables in ``env``."""
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"blobs URL {url!r} is not s3://bucket/prefix")
        config: dict[str, object] = {"virtual_hosted_style_request": False}
        for var, key in (
            ("AWS_ACCESS_KEY_ID", "access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
            ("AWS_SESSION_TOKEN", "session_token"),
            ("AWS_REGION", "region"),
            ("AWS_ENDPOINT_URL", "endpoint"),
        ):
            if env.get(var):
                config[key] = env[var]
        endpoint = str(config.get("endpoint", ""))
        options = dict(CLIENT_OPTIONS, allow_http=endpoint.startswith("http://"))
        store = S3Store(
            parts.netloc, prefix=parts.path.strip("/") or None, config=config, client_options=options,
            retry_config=RETRY,
        )
        return cls(store)

    async def _put_content(self, chunks: AsyncIterable[bytes], expected_sha: str | None) -> BlobInfo:
        hasher = Hasher(expected_sha)
        if expected_sha is not None and await self._fresh(content_key(expected_sha)):
            async for chunk in chunks:  # stored already: only prove the claim
                hasher.update(chunk)
            return hasher.finish()
        key = content_key(expected_sha) if expected_sha else f"tmp/{uuid.uuid4().hex}"
        info = await self._upload(key, chunks, hasher)
        if expected_sha is None:
            await self._publish(key, info.sha)
        return info

    async def _upload(self, key: str, chunks: AsyncIterable[bytes], hasher: Hasher) -> BlobInfo:
        """Stream to ``key``: one PUT when it fits a part, else a multipart upload completed only if checked."""
        it = aiter(chunks)
        head = bytearray()
        ended = True
        async for chunk in it:
            head += chunk
            if len(head) >= PART_SIZE:
                ended = False
                break
        hasher.update(head)
        if ended:
            info = hasher.finish()  # mismatch: raises before anything is written
            with _unavailable():
                await obstore.put_async(self._store, key, bytes(head), use_multipart=False)
            return info
        result: list[BlobInfo] = []
        failure: list[BaseException] = []

        async def checked() -> AsyncIterator[bytes]:
            try:
                yield bytes(head)
                async for c in it:
                    hasher.update(c)
                    yield c
                # Raising here, before the last part, makes obstore abort instead of complete.
                result.append(hasher.finish())
            except BaseException as e:
                failure.append(e)
                raise

        try:
            await obstore.put_async(
                self._store, key, checked(), chunk_size=PART_SIZE, max_concurrency=PART_CONCURRENCY
            )
        except (BaseError, OSError) as e:
            if failure:
                # The client's stream failed or the hash did not match: that, not obstore's wrapping of it.
                raise failure[0] from None
            raise BlobStoreUnavailable(f"object store: {e}") from e
        return result[0]

    async def _publish(self, tmp_key: str, sha: str) -> None:
        with _unavailable():
            try:
                if not await self._fresh(content_key(sha)):  # absent, or old: (re)written, young again
                    await obstore.copy_async(self._store, tmp_key, content_key(sha))
            finally:
                await obstore.delete_async(self._store, tmp_key)

    async def _open_content(self, sha: str) -> Blob | None:
        with _unavailable():
            try:
                result = await obstore.get_async(self._store, content_key(sha))
            except FileNotFoundError:  # obstore's "not found"
                return None
        return _ObjectBlob(result, result.meta["size"])

    async def _content_size(self, sha: str) -> int | None:
        return await self._head(content_key(sha))

    async def _head(self, key: str) -> int | None:
        meta = await self._meta(key)
        return None if meta is None else meta["size"]

    async def _meta(self, key: str) -> dict | None:
        with _unavailable():
            try:
                return await obstore.head_async(self._store, key)
            except FileNotFoundError:  # obstore's "not found"
                return None

    async def _mtime(self, key: str) -> float | None:
        meta = await self._meta(key)
        return None if meta is None else meta["last_modified"].timestamp()

    async def _fresh(self, key: str) -> bool:
        """The object exists and was written less than ``REFRESH_S`` ago."""
        mtime = await self._mtime(key)
        return mtime is not None and mtime >= time.time() - REFRESH_S

    async def _add_ref(self, org: str, sha: str) -> None:
        with _unavailable():
            await obstore.put_async(self._store, ref_key(org, sha), b"", use_multipart=False)

    async def _has_ref(self, org: str, sha: str) -> bool:
        return await self._head(ref_key(org, sha)) is not None

    # Garbage collection: listings stream page by page (1,000 keys per S3 request).

    async def _list(self, prefix: str) -> AsyncIterator[list[tuple[str, float, int]]]:
        with _unavailable():
            async for page in obstore.list(self._store, prefix=prefix, chunk_size=LIST_CHUNK):
                yield [(m["path"], m["last_modified"].timestamp(), m["size"]) for m in page]

    async def _list_refs(self) -> AsyncIterator[list[tuple[str, str, float]]]:
        async for page in self._list("refs/"):
            out = []
            for key, mtime, _ in page:
                parts = key.split("/")  # refs/<org>/<ab>/<sha>
                if len(parts) == 4 and SHA256_RE.match(parts[3]):
                    out.append((parts[1], parts[3], mtime))
            yield out

    async def _list_contents(self) -> AsyncIterator[list[tuple[str, float, int]]]:
        async for page in self._list("sha256/"):
            out = []
            for key, mtime, size in page:
                sha = key.rsplit("/", 1)[-1]
                if SHA256_RE.match(sha) and key == content_key(sha):
                    out.append((sha, mtime, size))
            yield out

    async def _list_temporaries(self) -> AsyncIterator[list[tuple[str, float]]]:
        async for page in self._list("tmp/"):
            yield [(key, mtime) for key, mtime, _ in page]

    async def _ref_mtime(self, org: str, sha: str) -> float | None:
        return await self._mtime(ref_key(org, sha))

    async def _content_mtime(self, sha: str) -> float | None:
        return await self._mtime(content_key(sha))

    async def _delete(self, key: str) -> None:
        with _unavailable(), contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self._store, key)

    async def _delete_ref(self, org: str, sha: str) -> None:
        await self._delete(ref_key(org, sha))

    async def _delete_content(self, sha: str) -> None:
        await self._delete(content_key(sha))

    async def _delete_temporary(self, key: str) -> None:
        if key.startswith("tmp/"):
            await self._delete(key)
