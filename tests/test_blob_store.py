"""One contract, both blob stores: a directory, and S3 on a real SeaweedFS server.

What every test checks, besides its own point: ``stored()`` lists every file or
object the store holds (bytes, references, temporaries), so "nothing stored"
and "stored once" are checked against the storage itself, not the interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import obstore
import pytest

from arwx.blobs import s3 as s3_module
from arwx.blobs.base import BadSha, BlobStore, HashMismatch, check_sha
from arwx.blobs.directory import DirectoryBlobStore
from arwx.blobs.s3 import S3BlobStore
from tests.seaweedfs import SeaweedS3

# Bigger than one part: exercises the multipart path of the S3 store.
BIG = s3_module.PART_SIZE * 2 + 12345


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def cut_off(data: bytes, after: int) -> AsyncIterator[bytes]:
    """A client that goes away after ``after`` bytes."""
    async for c in chunks(data[:after]):
        yield c
    raise ConnectionResetError("client went away")


async def read_all(store: BlobStore, org: str, digest: str) -> bytes | None:
    blob = await store.open(org, digest)
    if blob is None:
        return None
    try:
        return b"".join([c async for c in blob.chunks()])
    finally:
        await blob.close()


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "directory":
        s: BlobStore = DirectoryBlobStore(tmp_path / "blobs")
    else:
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        # A fresh prefix per test: tests share the bucket, never objects.
        s = S3BlobStore.from_url(f"{seaweed.url}/{uuid.uuid4().hex}", env=seaweed.env)
    asyncio.run(s.start())
    yield s
    asyncio.run(s.stop())


async def stored(store: BlobStore) -> set[str]:
    """Every file or object the store holds, by its key."""
    if isinstance(store, DirectoryBlobStore):
        return {str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()}
    assert isinstance(store, S3BlobStore)
    keys: set[str] = set()
    async for batch in obstore.list(store._store):
        keys.update(m["path"] for m in batch)
    return keys


def content_keys(keys: set[str]) -> set[str]:
    return {k for k in keys if k.startswith("sha256/")}


@pytest.mark.parametrize("size", [0, 1, 100_000, BIG])
@pytest.mark.parametrize("claim", [True, False])
async def test_round_trip(store: BlobStore, size: int, claim: bool) -> None:
    data = os.urandom(size)
    info = await store.put("org_a", chunks(data), sha(data) if claim else None)
    assert (info.sha, info.size) == (sha(data), size)
    assert await read_all(store, "org_a", info.sha) == data
    assert await store.size("org_a", info.sha) == size
    assert await store.missing("org_a", [info.sha]) == []
    blob = await store.open("org_a", info.sha)
    assert blob is not None and blob.size == size
    await blob.close()
    keys = await stored(store)
    assert content_keys(keys) == {f"sha256/{info.sha[:2]}/{info.sha[2:4]}/{info.sha}"}
    assert not [k for k in keys if k.startswith("tmp/")]


@pytest.mark.parametrize("size", [1000, BIG])
async def test_hash_mismatch_is_refused_and_nothing_is_stored(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    before = await stored(store)
    wrong = sha(b"something else")
    with pytest.raises(HashMismatch) as e:
        await store.put("org_a", chunks(data), wrong)
    assert e.value.claimed == wrong and e.value.actual == sha(data)
    assert wrong in str(e.value) and sha(data) in str(e.value)
    assert await stored(store) == before
    assert await store.missing("org_a", [wrong, sha(data)]) == [wrong, sha(data)]
    assert await store.open("org_a", sha(data)) is None


async def test_identical_bytes_are_stored_once(store: BlobStore) -> None:
    data = os.urandom(50_000)
    first = await store.put("org_a", chunks(data), sha(data))
    second = await store.put("org_a", chunks(data))  # no claim: the tmp-then-publish path
    third = await store.put("org_b", chunks(data), sha(data))
    assert first == second == third
    keys = await stored(store)
    assert len(content_keys(keys)) == 1
    assert not [k for k in keys if k.startswith("tmp/")]


@pytest.mark.parametrize("size", [30_000, BIG])
async def test_concurrent_uploads_of_the_same_bytes(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    digest = sha(data)
    uploads = [store.put(f"org_{i % 3}", chunks(data), digest if i % 2 else None) for i in range(6)]
    infos = await asyncio.gather(*uploads)
    assert {(i.sha, i.size) for i in infos} == {(digest, size)}
    keys = await stored(store)
    assert content_keys(keys) == {f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"}
    assert not [k for k in keys if k.startswith("tmp/")]
    for org in ("org_0", "org_1", "org_2"):
        assert await read_all(store, org, digest) == data


@pytest.mark.parametrize("size", [40_000, BIG])
@pytest.mark.parametrize("claim", [True, False])
async def test_an_interrupted_upload_leaves_nothing(store: BlobStore, size: int, claim: bool) -> None:
    data = os.urandom(size)
    before = await stored(store)
    with pytest.raises(ConnectionResetError):
        await store.put("org_a", cut_off(data, size - 1000), sha(data) if claim else None)
    assert await stored(store) == before
    assert await store.missing("org_a", [sha(data)]) == [sha(data)]
    # The same bytes, whole, go in afterwards as if nothing had happened.
    assert (await store.put("org_a", chunks(data), sha(data))).size == size
    assert await read_all(store, "org_a", sha(data)) == data


async def test_a_missing_blob_is_none(store: BlobStore) -> None:
    absent = sha(b"never uploaded")
    assert await store.open("org_a", absent) is None
    assert await store.size("org_a", absent) is None
    present = await store.put("org_a", chunks(b"here"))
    assert await store.missing("org_a", [absent, present.sha, absent]) == [absent]


async def test_an_org_sees_only_blobs_it_uploaded(store: BlobStore) -> None:
    data = os.urandom(20_000)
    digest = (await store.put("org_a", chunks(data))).sha
    # To org_b, org_a's blob is exactly a missing one.
    assert await store.open("org_b", digest) is None
    assert await store.size("org_b", digest) is None
    assert await store.missing("org_b", [digest]) == [digest]
    # Claiming org_a's SHA without its bytes gains nothing.
    with pytest.raises(HashMismatch):
        await store.put("org_b", chunks(b"not those bytes"), digest)
    assert await store.open("org_b", digest) is None
    # Uploading the bytes proves having them: now org_b reads them too, stored once.
    assert (await store.put("org_b", chunks(data), digest)).sha == digest
    assert await read_all(store, "org_b", digest) == data
    assert await read_all(store, "org_a", digest) == data
    assert len(content_keys(await stored(store))) == 1


async def test_bad_shas_and_orgs_are_refused(store: BlobStore) -> None:
    for bad in ("", "abc", "A" * 64, "g" * 64, "a" * 65, "../" + "a" * 61):
        with pytest.raises(BadSha):
            check_sha(bad)
        with pytest.raises(BadSha):
            await store.open("org_a", bad)
        with pytest.raises(BadSha):
            await store.missing("org_a", ["a" * 64, bad])
    with pytest.raises(ValueError, match="org id"):
        await store.put("../etc", chunks(b"x"))
    assert await stored(store) == set()
