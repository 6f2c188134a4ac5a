"""One contract, both blob stores: a directory, and S3 on a real SeaweedFS server.

What every test checks, besides its own point: ``stored()`` lists every file or
object the store holds (bytes, references, temporaries), so "nothing stored"
and "stored once" are checked against the storage itself, not the interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import obstore
import pytest

from arwx.blobs import base as blobs_base
from arwx.blobs import directory as directory_module
from arwx.blobs import s3 as s3_module
from arwx.blobs.base import BadSha, BlobStore, HashMismatch, check_sha
from arwx.blobs.directory import DirectoryBlobStore
from arwx.blobs.gc import GcRefused, collect
from arwx.blobs.live import REFERENCES
from arwx.blobs.s3 import S3BlobStore
from arwx.catalog import Catalog, tables
from tests.helpers import wait_for
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


# --- Garbage collection (arwx.blobs.gc): the same contract, with a real catalog beside the store.


async def open_catalog_with(path: Path, org_ids: list[str]) -> Catalog:
    catalog = Catalog.open("", path)
    await catalog.start()
    async with catalog.begin() as conn:
        for o in org_ids:
            await conn.execute(tables.orgs.insert().values(org=o, name=o, created_at=0))
    return catalog


async def name_on_run(catalog: Catalog, org: str, run_id: str, digest: str) -> None:
    """A catalog row naming a blob (a run's file, as chachaml and ml-service store them)."""
    async with catalog.begin() as conn:
        await conn.execute(tables.compat_run_files.insert().values(
            org=org, run_id=run_id, name=digest[:8], sha256=digest, size=1, content_type="x", created_at=0))


def ref_keys(keys: set[str]) -> set[str]:
    return {k for k in keys if k.startswith("refs/")}


async def test_gc_deletes_only_what_no_row_names_once_past_the_grace(store: BlobStore, tmp_path: Path) -> None:
    catalog = await open_catalog_with(tmp_path / "cat", ["org_a", "org_b"])
    try:
        named, unnamed, shared, foreign = (os.urandom(3000 + i) for i in range(4))
        for org, data in (("org_a", named), ("org_a", unnamed), ("org_a", shared), ("org_b", shared), ("org_c", foreign)):
            await store.put(org, chunks(data))
        await name_on_run(catalog, "org_a", "r1", sha(named))
        await name_on_run(catalog, "org_b", "r2", sha(shared))  # org_a's copy of it is named by nothing
        before = await stored(store)
        # Everything is younger than the grace period: nothing goes.
        report = await collect(store, catalog, grace_s=3600)
        assert (report.refs_deleted, report.blobs_deleted, report.live_pairs) == (0, 0, 2)
        assert await stored(store) == before
        later = time.time() + 7200
        # A dry run says what would go and deletes nothing.
        dry = await collect(store, catalog, grace_s=3600, dry_run=True, now=later)
        assert (dry.refs_deleted, dry.blobs_deleted, dry.bytes_deleted, dry.refs_foreign) == (2, 1, len(unnamed), 1)
        assert await stored(store) == before
        # Two collectors at once (two servers): no error, and the store ends as with one (each may
        # count a delete the other also made: deleting twice is a no-op).
        a, b = await asyncio.gather(*(collect(store, catalog, grace_s=3600, now=later) for _ in range(2)))
        assert 2 <= a.refs_deleted + b.refs_deleted <= 4 and 1 <= a.blobs_deleted + b.blobs_deleted <= 2
        after = await stored(store)
        assert content_keys(after) == {k for k in content_keys(before) if not k.endswith(sha(unnamed))}
        assert ref_keys(after) == {
            f"refs/org_a/{sha(named)[:2]}/{sha(named)}", f"refs/org_b/{sha(shared)[:2]}/{sha(shared)}",
            f"refs/org_c/{sha(foreign)[:2]}/{sha(foreign)}",  # an org this catalog does not know: left alone
        }
        assert await read_all(store, "org_a", sha(named)) == named
        assert await read_all(store, "org_b", sha(shared)) == shared
        assert await read_all(store, "org_c", sha(foreign)) == foreign
        assert await store.missing("org_a", [sha(unnamed), sha(shared)]) == [sha(unnamed), sha(shared)]
        # Nothing left to collect; uploading the collected bytes again works as new.
        again = await collect(store, catalog, grace_s=3600, now=later)
        assert (again.refs_deleted, again.blobs_deleted) == (0, 0)
        assert (await store.put("org_a", chunks(unnamed))).sha == sha(unnamed)
        assert await read_all(store, "org_a", sha(unnamed)) == unnamed
    finally:
        await catalog.stop()


async def test_gc_spares_what_was_used_after_the_cutoff(store: BlobStore, tmp_path: Path, monkeypatch) -> None:
    """A blob asked for (``missing`` said present: the client will name it) or uploaded again
    after the cutoff stays, though no row names it yet; one left alone goes."""
    for module in (blobs_base, s3_module, directory_module):
        monkeypatch.setattr(module, "REFRESH_S", 0.0)  # every use touches (the real bound is minutes)
    catalog = await open_catalog_with(tmp_path / "cat", ["org_a"])
    try:
        asked, reuploaded, idle = (os.urandom(2000 + i) for i in range(3))
        for data in (asked, reuploaded, idle):
            await store.put("org_a", chunks(data), sha(data))
        stored_at = max([await store._ref_mtime("org_a", sha(d)) for d in (asked, reuploaded, idle)])
        # Object stores keep whole seconds: the uses below happen a full second after the cutoff.
        cutoff = stored_at + 1
        wait_for(lambda: time.time() >= cutoff + 1.05, 5, what="the clock to pass the cutoff")
        assert await store.missing("org_a", [sha(asked)]) == []
        await store.put("org_a", chunks(reuploaded), sha(reuploaded))
        report = await collect(store, catalog, grace_s=100, now=cutoff + 100)
        assert (report.refs_deleted, report.blobs_deleted) == (1, 1), report
        assert await read_all(store, "org_a", sha(asked)) == asked
        assert await read_all(store, "org_a", sha(reuploaded)) == reuploaded
        assert await store.open("org_a", sha(idle)) is None
        assert not [k for k in await stored(store) if k.endswith(sha(idle))]
    finally:
        await catalog.stop()


async def test_gc_refuses_an_empty_catalog(store: BlobStore, tmp_path: Path) -> None:
    catalog = await open_catalog_with(tmp_path / "cat", [])
    try:
        await store.put("org_a", chunks(b"precious"))
        before = await stored(store)
        with pytest.raises(GcRefused, match="no organization"):
            await collect(store, catalog, grace_s=0, now=time.time() + 7200)
        assert await stored(store) == before
    finally:
        await catalog.stop()


def test_gc_knows_every_catalog_column_that_names_a_blob() -> None:
    """A new table storing a SHA-256 must be added to arwx.blobs.live.REFERENCES, or its blobs
    would be collected while named."""
    covered = {(r.table.name, r.column.name) for r in REFERENCES}
    naming = {
        (t.name, c.name) for t in tables.metadata.tables.values() for c in t.columns
        if re.search(r"(^|_)sha(256)?$", c.name) or c.name in ("manifest", "tree", "fingerprint")
    }
    naming -= {("idempotency_keys", "fingerprint")}  # a request's digest, not a blob
    assert {("files", "sha256"), ("experiments", "tree"), ("artifact_versions", "manifest")} <= naming
    assert naming <= covered, naming - covered
    for r in REFERENCES:
        assert r.column.table is r.table and "org" in r.table.c
