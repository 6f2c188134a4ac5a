"""Client-chosen session and experiment ids (what lets an offline SDK name them before the
server sees them), and the retryable 409 of a request still being answered.

Against a real ``arwx server`` on each catalog (the ``orgs`` fixture of test_control.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from arwx.catalog import Catalog
from arwx.control.idempotency import IdempotencyKeys, fingerprint
from arwx.errors import Conflict
from tests.helpers import Api
from tests.test_control import orgs  # noqa: F401 - the fixture


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def test_a_client_chosen_session_id_is_created_once(orgs: tuple[Api, Api]) -> None:  # noqa: F811
    a, b = orgs
    project, sid = f"p-{uuid.uuid4().hex[:8]}", _id("ses")
    status, first = a.post("/v1/sessions", {"id": sid, "project": project, "tag": "t"})
    assert status == 201 and first["id"] == sid
    status, again = a.post("/v1/sessions", {"id": sid, "project": project, "tag": "t"})
    assert status == 200 and again["id"] == sid
    assert [s["id"] for s in a.ok("GET", f"/v1/projects/{project}/sessions")["sessions"]] == [sid]
    status, err = a.post("/v1/sessions", {"id": sid, "project": project + "-other"})
    assert status == 409 and "id" in err["error"]
    # Another organization's id space is its own: the same id is a new session there.
    assert b.post("/v1/sessions", {"id": sid, "project": project})[0] == 201
    assert a.post("/v1/sessions", {"id": "bad id!", "project": project})[0] == 400


def test_a_client_chosen_experiment_id_is_created_once(orgs: tuple[Api, Api]) -> None:  # noqa: F811
    a, b = orgs
    project, sid, eid = f"p-{uuid.uuid4().hex[:8]}", _id("ses"), _id("exp")
    a.ok("POST", "/v1/sessions", {"id": sid, "project": project})
    body = {"id": eid, "session_id": sid, "note": "n", "commit": "c1", "diff": "d", "config": {"lr": 1}}
    status, first = a.post("/v1/experiments", body)
    assert status == 201 and first["id"] == eid
    a.ok("POST", f"/v1/experiments/{eid}/decision", {"status": "keep", "score": 1.0})
    status, again = a.post("/v1/experiments", body)  # a resend after its key expired, say
    assert status == 200 and again["id"] == eid and again["decision"]["status"] == "keep"
    assert a.ok("GET", f"/v1/projects/{project}")["experiments"] == 1
    status, err = a.post("/v1/experiments", {**body, "diff": "another diff"})
    assert status == 409 and eid in err["error"]
    # Another organization cannot learn of it, and its own id space is separate.
    status, _ = b.post("/v1/experiments", {**body, "session_id": None, "project": project})
    assert status in (400, 404)  # b has no such project / session: nothing about a's experiment
    assert b.get(f"/v1/experiments/{eid}")[0] == 404


def test_a_request_still_being_answered_is_a_409_to_retry(tmp_path: Path) -> None:
    async def go() -> Conflict:
        catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}", tmp_path)
        await catalog.start()
        try:
            from arwx.tenancy import Tenancy

            org = await Tenancy(catalog).create_org("o")
            keys = IdempotencyKeys(catalog)
            fp = fingerprint("POST", "/v1/sessions", b"{}")
            assert await keys.claim(org, "k1", fp) is None  # claimed, not answered yet
            with pytest.raises(Conflict) as busy:
                await keys.claim(org, "k1", fp)
            with pytest.raises(Conflict) as reused:
                await keys.claim(org, "k1", fingerprint("POST", "/v1/sessions", b"{\"x\":1}"))
            assert "Retry-After" not in reused.value.headers
            return busy.value
        finally:
            await catalog.stop()

    busy = asyncio.run(go())
    assert busy.status == 409 and busy.headers.get("Retry-After") == "1" and "still being answered" in str(busy)
