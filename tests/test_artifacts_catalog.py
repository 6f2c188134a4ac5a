"""The artifact service on each catalog directly (SQLite and PostgreSQL), without HTTP.

Many concurrent logs through one process (each on its own catalog
connection), the canonical digest, and the project's winner as the control
plane's project summary reads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from arwx.blobs.directory import DirectoryBlobStore
from arwx.catalog import Catalog
from arwx.control.artifacts import Artifacts, Entry, canonical
from arwx.control.files import Files
from arwx.errors import BadRequest, Conflict
from arwx.tenancy import Tenancy


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def service(catalog_url: str, tmp_path: Path):
    catalog = Catalog.open(catalog_url, tmp_path)
    await catalog.start()
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    await blobs.start()
    org = await Tenancy(catalog).create_org("artifacts")
    files = Files(catalog, blobs)
    try:
        yield Artifacts(catalog, blobs, files), blobs, org
    finally:
        await blobs.stop()
        await catalog.stop()


async def _manifest(blobs: DirectoryBlobStore, org: str, n: int = 1) -> dict[str, tuple[str, int]]:
    out = {}
    for i in range(n):
        info = await blobs.put(org, _chunks(os.urandom(32)))
        out[f"f{i}"] = (info.sha, info.size)
    return out


def test_the_digest_is_the_sha256_of_the_sorted_compact_manifest() -> None:
    a, b = Entry("b/x", "1" * 64, 2), Entry("a", "0" * 64, 1)
    ordered, digest = canonical([a, b])
    assert ordered == [b, a]
    expected = hashlib.sha256(msgspec.json.encode([["a", "0" * 64, 1], ["b/x", "1" * 64, 2]])).hexdigest()
    assert digest == expected == canonical([b, a])[1]
    # Size is part of the identity.
    assert canonical([Entry("a", "0" * 64, 2), a])[1] != digest


async def test_twenty_concurrent_logs_number_one_to_twenty(service) -> None:
    artifacts, blobs, org = service
    manifests = [await _manifest(blobs, org) for _ in range(20)]
    results = await asyncio.gather(*(
        artifacts.log(org, "key_t", "p", "many", "model", m, None, None) for m in manifests
    ))
    assert all(new for _, new in results)
    assert sorted(int(v["version"][1:]) for v, _ in results) == list(range(1, 21))
    # The same 20 again, at once: no new versions.
    again = await asyncio.gather(*(artifacts.log(org, "key_t", "p", "many", "model", m, None, None) for m in manifests))
    assert [v["version"] for v, _ in again] == [v["version"] for v, _ in results] and not any(n for _, n in again)


async def test_concurrent_compare_and_set_has_one_winner(service) -> None:
    artifacts, blobs, org = service
    for _ in range(6):
        await artifacts.log(org, "key_t", "p", "cas", "model", await _manifest(blobs, org), None, None)
    await artifacts.move_ref(org, "key_a", "cas", "best", "p", 1, None)
    outcomes = await asyncio.gather(
        *(artifacts.move_ref(org, f"key_{v}", "cas", "best", "p", v, 1) for v in range(2, 7)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 1 and all(isinstance(o, Conflict) for o in outcomes if not isinstance(o, dict)), outcomes
    detail = await artifacts.detail(org, "cas", "p")
    assert [(m["from"], m["to"]) for m in reversed(detail["ref_log"])] == [(None, "v1"), ("v1", won[0]["version"])]
    assert detail["ref_log"][0]["moved_by"] == f"key_{won[0]['version'][1:]}"


async def test_the_projects_winner_is_the_last_moved_winner_ref(service) -> None:
    artifacts, blobs, org = service
    assert await artifacts.winner(org, "w") is None
    for name in ("model-a", "model-b"):
        await artifacts.log(org, "key_t", "w", name, "model", await _manifest(blobs, org, 2), None, None)
    await artifacts.move_ref(org, "key_t", "model-a", "winner", "w", 1)
    assert (await artifacts.winner(org, "w"))["name"] == "model-a"
    await artifacts.move_ref(org, "key_t", "model-b", "winner", "w", 1)
    got = await artifacts.winner(org, "w")
    assert (got["name"], got["version"]) == ("model-b", "v1")
    assert await artifacts.winner(org, "other-project") is None


async def test_refusals_name_what_was_wrong(service) -> None:
    artifacts, blobs, org = service
    m = await _manifest(blobs, org)
    with pytest.raises(BadRequest, match="exactly one of manifest"):
        await artifacts.log(org, "key_t", "p", "x", "model", m, "file_0", None)
    with pytest.raises(BadRequest, match="never uploaded"):
        await artifacts.log(org, "key_t", "p", "x", "model", {"g": ("a" * 64, 1)}, None, None)
    await artifacts.log(org, "key_t", "p", "x", "model", m, None, None)
    with pytest.raises(Conflict, match="type"):
        await artifacts.log(org, "key_t", "p", "x", "dataset", m, None, None)
