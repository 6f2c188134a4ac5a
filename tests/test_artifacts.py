"""Files and artifacts against a real ``arwx server`` process on each catalog (SQLite and PostgreSQL).

Content-addressed versions (identical content is the same version), numbers
without gaps or duplicates when clients log at once, refs moved by
compare-and-set with a log of every move, ``latest`` and ``vN``, lineage,
external and uploaded files, bad input named field by field, organizations
kept apart (404), and the seed's cURL example run verbatim through ``curl``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from tests.helpers import Api, two_org_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def orgs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(a, b): clients of two organizations on one real server with the given catalog."""
    yield from two_org_server(request, tmp_path_factory, "artifacts", "/v1/artifacts")


def _name() -> str:
    return f"a-{uuid.uuid4().hex[:8]}"


def _blob(api: Api, data: bytes) -> tuple[str, int]:
    out = api.ok("POST", "/v1/blobs", raw=data)
    return out["sha"], out["size"]


def _manifest(api: Api, files: dict[str, bytes]) -> dict:
    out = {}
    for path, data in files.items():
        sha, size = _blob(api, data)
        out[path] = {"sha256": sha, "size": size}
    return out


def _download(api: Api, sha: str) -> bytes:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=60)
    conn.request("GET", f"/v1/blobs/{sha}", headers={"Authorization": f"Bearer {api.key}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, (resp.status, body[:200])
    return body


def _experiment(api: Api, project: str) -> str:
    """A real experiment of ``project`` (lineage names experiments that exist)."""
    api.ok("POST", "/v1/projects", {"name": project})
    api.ok("POST", "/v1/sessions", {"project": project})
    return api.ok("POST", "/v1/experiments", {"project": project, "note": "made an artifact"})["id"]


def _log(api: Api, project: str, name: str, manifest: dict, **extra) -> tuple[int, dict]:
    return api.post("/v1/artifacts/log", {"project": project, "name": name, "type": "model", "manifest": manifest,
                                          **extra})


def test_seed_curl_resolves_the_winner_verbatim(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    m = _manifest(a, {"model.pt": os.urandom(1000), "config.json": b'{"lr": 0.1}'})
    status, v = _log(a, "char-lm", "char-lm", m)
    assert status in (200, 201), v
    a.ok("PUT", "/v1/artifacts/char-lm/refs/winner", {"project": "char-lm", "version": v["version"]})
    seed = (Path(__file__).resolve().parents[1] / ".." / "shared" / "seeds" / "arwx-api.txt")
    cmd = ('curl -s "https://api.bullmask.com/v1/artifacts/char-lm/winner?project=char-lm" '
           '-H "Authorization: Bearer $ARWANDB_API_KEY"')
    if seed.exists():  # the example as the seed prints it (the worktree may sit beside shared/)
        assert cmd.replace('" -H', '" \\ -H') in seed.read_text()
    out = subprocess.run(
        ["bash", "-c", cmd.replace("https://api.bullmask.com", a.url)],
        env={**os.environ, "ARWANDB_API_KEY": a.key}, capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    import json

    got = json.loads(out)
    assert got["name"] == "char-lm" and got["project"] == "char-lm" and got["ref"] == "winner"
    assert got["version"] == v["version"] and got["digest"] == v["digest"]
    assert {e["path"]: {"sha256": e["sha256"], "size": e["size"]} for e in got["manifest"]} == m


def test_identical_content_is_the_same_version_and_new_content_the_next(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name, files_a = _name(), {"w.bin": os.urandom(2000), "sub/dir/cfg.txt": b"lr=1"}
    ma = _manifest(a, files_a)
    exp_one, exp_two = _experiment(a, "p1"), _experiment(a, "p1")
    status, v1 = _log(a, "p1", name, ma, produced_by=exp_one)
    assert status == 201 and v1["version"] == "v1" and v1["created"] is True, v1
    # Re-sent, or the same content in another order: the same version, a no-op.
    status, again = _log(a, "p1", name, dict(reversed(list(ma.items()))))
    assert status == 200 and again["version"] == "v1" and again["created"] is False
    assert again["digest"] == v1["digest"] and again["produced_by"] == exp_one
    mb = _manifest(a, {"w.bin": os.urandom(2000)})
    status, v2 = _log(a, "p1", name, mb, produced_by=exp_two)
    assert (status, v2["version"]) == (201, "v2") and v2["digest"] != v1["digest"]
    # Going back to old content is the old version, not v3.
    assert _log(a, "p1", name, ma)[1]["version"] == "v1"
    latest = a.ok("GET", f"/v1/artifacts/{name}/latest", params={"project": "p1"})
    assert latest["version"] == "v2" and latest["produced_by"] == exp_two
    first = a.ok("GET", f"/v1/artifacts/{name}/v1", params={"project": "p1"})
    assert first["digest"] == v1["digest"] and [e["path"] for e in first["manifest"]] == ["sub/dir/cfg.txt", "w.bin"]
    # The manifest's SHAs download the bytes.
    by_sha = {hashlib.sha256(d).hexdigest(): d for d in files_a.values()}
    for e in first["manifest"]:
        assert _download(a, e["sha256"]) == by_sha[e["sha256"]]
    assert a.request("GET", f"/v1/artifacts/{name}/v3", params={"project": "p1"})[0] == 404
    detail = a.ok("GET", f"/v1/artifacts/{name}", params={"project": "p1"})
    assert [x["version"] for x in detail["versions"]] == ["v2", "v1"]
    assert detail["refs"] == {"latest": "v2"}
    assert detail["lineage"] == [{"version": "v2", "produced_by": exp_two}, {"version": "v1", "produced_by": exp_one}]
    # Without ?project= a name that lives in one project resolves.
    assert a.ok("GET", f"/v1/artifacts/{name}")["project"] == "p1"
    listed = a.ok("GET", "/v1/artifacts", params={"type": "model", "project": "p1"})["artifacts"]
    assert {"project": "p1", "name": name, "type": "model", "latest": "v2", "versions": 2}.items() <= next(
        x for x in listed if x["name"] == name).items()
    assert all(x["name"] != name for x in a.ok("GET", "/v1/artifacts", params={"type": "dataset"})["artifacts"])
    produced = a.ok("GET", "/v1/artifacts", params={"produced_by": exp_two})["versions"]
    assert produced == [{"project": "p1", "name": name, "version": "v2", "digest": v2["digest"]}]


def test_two_clients_logging_at_once_get_distinct_consecutive_versions(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name, n = _name(), 8
    manifests = [_manifest(a, {"m.bin": os.urandom(100)}) for _ in range(n)]
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def log(i: int) -> None:
        try:
            client = Api(a.url, a.key)  # its own connection
            barrier.wait(10)
            results[i] = _log(client, "conc", name, manifests[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(status == 201 for status, _ in results), results
    assert sorted(int(v["version"][1:]) for _, v in results) == list(range(1, n + 1))
    # The same content from several clients at once: one version.
    same = _manifest(a, {"m.bin": os.urandom(100)})
    barrier2, outs = threading.Barrier(4), []

    def log_same() -> None:
        client = Api(a.url, a.key)
        barrier2.wait(10)
        outs.append(_log(client, "conc", name, same))

    threads = [threading.Thread(target=log_same) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outs) == 4 and {v["version"] for _, v in outs} == {f"v{n + 1}"}, outs
    assert sorted(s for s, _ in outs) == [200, 200, 200, 201]
    versions = a.ok("GET", f"/v1/artifacts/{name}", params={"project": "conc"})["versions"]
    assert [x["version"] for x in versions] == [f"v{i}" for i in range(n + 1, 0, -1)]


def test_promotions_compare_and_set_and_every_move_is_logged(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    for i in range(4):
        _log(a, "cas", name, _manifest(a, {"f": os.urandom(50 + i)}))
    ref = f"/v1/artifacts/{name}/refs/winner"
    # No ref yet: expected null means "only if absent".
    assert a.ok("PUT", ref, {"project": "cas", "version": "v1", "expected_version": None})["previous"] is None
    status, out = a.request("PUT", ref, {"project": "cas", "version": "v2", "expected_version": None})
    assert status == 409 and out["current_version"] == "v1" and "expected_version" in out["error"]
    moved = a.ok("PUT", ref, {"project": "cas", "version": "v2", "expected_version": "v1", "reason": "better"})
    assert (moved["previous"], moved["version"], moved["moved"]) == ("v1", "v2", True)
    # A re-sent move (the compare-and-set above succeeded, its answer was lost) is harmless.
    again = a.ok("PUT", ref, {"project": "cas", "version": "v2", "expected_version": "v1", "reason": "better"})
    assert (again["version"], again["moved"]) == ("v2", False)
    status, out = a.request("PUT", ref, {"project": "cas", "version": 3, "expected_version": "v1"})
    assert status == 409 and out["current_version"] == "v2"
    # Unconditional moves need no expected version; ?project= works as well as the body.
    a.ok("PUT", ref, {"version": "v3"}, params={"project": "cas"})
    # Promotions with the same expected version at once (each to another version): one wins, the rest get 409.
    n = 5
    for i in range(n):
        _log(a, "cas", name, _manifest(a, {"f": os.urandom(60 + i)}))
    barrier, results = threading.Barrier(n), []

    def promote(v: int) -> None:
        client = Api(a.url, a.key)
        barrier.wait(10)
        results.append(client.request("PUT", ref, {"project": "cas", "version": v, "expected_version": "v3"}))

    threads = [threading.Thread(target=promote, args=(5 + i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] + [409] * (n - 1), results
    winner = next(o for s, o in results if s == 200)["version"]
    assert all(o["current_version"] == winner for s, o in results if s == 409)
    assert a.ok("GET", f"/v1/artifacts/{name}/winner", params={"project": "cas"})["version"] == winner
    detail = a.ok("GET", f"/v1/artifacts/{name}", params={"project": "cas"})
    assert detail["refs"] == {"latest": "v9", "winner": winner}
    moves = [(m["from"], m["to"], m["reason"]) for m in reversed(detail["ref_log"])]
    assert moves == [(None, "v1", None), ("v1", "v2", "better"), ("v2", "v3", None), ("v3", winner, None)]
    assert all(m["moved_by"].startswith("key_") and m["moved_at"] > 0 for m in detail["ref_log"])
    expected_refs = ["latest", "winner"] if winner == "v9" else ["winner"]
    assert next(v for v in detail["versions"] if v["version"] == winner)["refs"] == expected_refs


def test_files_external_and_uploaded(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    data = os.urandom(3000)
    digest = hashlib.sha256(data).hexdigest()
    body = {"uri": "s3://bucket/data/train.parquet", "sha256": digest, "size": len(data)}
    status, f = a.post("/v1/files", body)
    assert status == 201 and f["name"] == "train.parquet" and f["stored"] is False and f["id"].startswith("file_")
    status, again = a.post("/v1/files", body)
    assert (status, again["id"]) == (200, f["id"])
    # A registered external file can be in a manifest (its bytes live elsewhere), and logged by id.
    name = _name()
    status, v = _log(a, "files", name, {"train.parquet": {"sha256": digest, "size": len(data)}})
    assert status == 201, v
    status, by_id = a.post("/v1/artifacts/log", {"project": "files", "name": name, "type": "model", "file": f["id"]})
    assert (status, by_id["version"]) == (200, "v1")
    # The size must match what was registered.
    status, out = _log(a, "files", name, {"train.parquet": {"sha256": digest, "size": len(data) + 1}})
    assert status == 400 and digest in out["error"]
    # Uploaded: the server hashes the bytes; a wrong claim stores nothing.
    up = os.urandom(5000)
    status, u = a.post("/v1/files/upload", raw=up, params={"name": "weights.bin"})
    assert status == 201 and u["sha256"] == hashlib.sha256(up).hexdigest() and u["stored"] is True
    assert u["size"] == 5000 and u["name"] == "weights.bin"
    status, out = a.post("/v1/files/upload", raw=b"x", params={"sha256": "0" * 64})
    assert status == 400 and "0" * 64 in out["error"]
    status, v = a.post("/v1/artifacts/log", {"project": "files", "name": _name(), "type": "dataset", "file": u["id"]})
    assert status == 201 and v["type"] == "dataset", v
    got = a.ok("GET", f"/v1/artifacts/{v['name']}/latest")
    assert got["manifest"] == [{"path": "weights.bin", "sha256": u["sha256"], "size": 5000}]
    assert _download(a, u["sha256"]) == up


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "manifest": {}}, "project"),
    ({"project": "p", "name": "bad/name", "manifest": {}}, "name"),
    ({"project": "p", "name": "x", "manifest": {"../up": {"sha256": "0" * 64, "size": 1}}}, "manifest"),
    ({"project": "p", "name": "x", "manifest": {"f": {"sha256": "ABC", "size": 1}}}, "sha256"),
    ({"project": "p", "name": "x", "manifest": {"f": {"sha256": "0" * 64, "size": -1}}}, "size"),
    ({"project": "p", "name": "x", "manifest": {"f": {"sha256": "0" * 64, "size": 1}}, "extra": 1}, "extra"),
    ({"project": "p", "name": "x"}, "manifest"),
    ({"project": "p", "name": "x", "manifest": {}}, "manifest"),
    ({"project": "p", "name": "x", "file": "nope"}, "file"),
    ({"project": "p", "name": "x", "manifest": {"f": {"sha256": "0" * 64, "size": 1}}, "produced_by": "a b"},
     "produced_by"),
])
def test_bad_log_input_is_a_400_naming_the_field(orgs: tuple[Api, Api], body: dict, field: str) -> None:
    a, _ = orgs
    status, out = a.post("/v1/artifacts/log", body)
    assert status == 400 and field in out["error"], (status, out)


def test_manifest_naming_unknown_blobs_is_refused_naming_them(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    known = _manifest(a, {"ok": b"present"})
    ghost = hashlib.sha256(os.urandom(8)).hexdigest()
    status, out = _log(a, "p", _name(), {**known, "ghost.bin": {"sha256": ghost, "size": 8}})
    assert status == 400 and out["missing"] == [ghost] and "ghost.bin" in out["error"]
    status, out = _log(a, "p", _name(), {"ok": {**known["ok"], "size": 99}})
    assert status == 400 and "wrong size" in out["error"] and "ok" in out["error"]
    # One artifact has one type.
    name = _name()
    assert _log(a, "p", name, known)[0] == 201
    status, out = a.post("/v1/artifacts/log", {"project": "p", "name": name, "type": "dataset", "manifest": known})
    assert status == 409 and "type" in out["error"]
    # Lineage names an experiment of the caller's org.
    status, out = a.post("/v1/artifacts/log", {"project": "p", "name": name, "manifest": known,
                                               "produced_by": "exp_nosuch"})
    assert status == 400 and "produced_by" in out["error"] and "exp_nosuch" in out["error"]


def test_ref_names_versions_and_projects_are_checked(orgs: tuple[Api, Api]) -> None:
    a, _ = orgs
    name = _name()
    m = _manifest(a, {"f": os.urandom(10)})
    _log(a, "p-one", name, m)
    _log(a, "p-two", name, m)
    for ref, body, status, field in [
        ("latest", {"project": "p-one", "version": "v1"}, 400, "latest"),
        ("v7", {"project": "p-one", "version": "v1"}, 400, "ref"),
        ("winner", {"project": "p-one", "version": "v9"}, 400, "version"),
        ("winner", {"project": "p-one", "version": "1.0"}, 400, "version"),
        ("winner", {"project": "p-one", "version": "v1", "expected_version": "x"}, 400, "expected_version"),
        ("winner", {"version": "v1"}, 400, "project"),  # the name is in two projects
        ("winner", {"project": "p-three", "version": "v1"}, 404, "p-three"),
    ]:
        got, out = a.request("PUT", f"/v1/artifacts/{name}/refs/{ref}", body)
        assert got == status and field in out["error"], (ref, body, got, out)
    status, out = a.request("GET", f"/v1/artifacts/{name}/latest")
    assert status == 400 and "p-one" in out["error"] and "p-two" in out["error"]
    assert a.ok("GET", f"/v1/artifacts/{name}/latest", params={"project": "p-two"})["project"] == "p-two"
    assert a.request("GET", f"/v1/artifacts/{name}/nosuchref", params={"project": "p-one"})[0] == 404
    assert a.request("GET", f"/v1/artifacts/{name}", params={"project": "p-nope"})[0] == 404


def test_organizations_never_see_each_others_artifacts_or_files(orgs: tuple[Api, Api]) -> None:
    a, b = orgs
    name = _name()
    m = _manifest(a, {"secret.bin": os.urandom(64)})
    _log(a, "iso", name, m)
    a.ok("PUT", f"/v1/artifacts/{name}/refs/winner", {"project": "iso", "version": "v1"})
    up = a.ok("POST", "/v1/files/upload", raw=os.urandom(10))
    for method, path, body in [
        ("GET", f"/v1/artifacts/{name}?project=iso", None),
        ("GET", f"/v1/artifacts/{name}", None),
        ("GET", f"/v1/artifacts/{name}/winner?project=iso", None),
        ("GET", f"/v1/artifacts/{name}/v1?project=iso", None),
        ("PUT", f"/v1/artifacts/{name}/refs/winner", {"project": "iso", "version": "v1"}),
        ("POST", "/v1/artifacts/log", {"project": "iso", "name": name, "file": up["id"]}),
    ]:
        status, out = b.request(method, path, body)
        assert status == 404, (method, path, status, out)
    assert all(x["name"] != name for x in b.ok("GET", "/v1/artifacts")["artifacts"])
    # Knowing a SHA is not having the bytes: b's manifest naming a's blob is refused.
    status, out = _log(b, "iso", name, m)
    assert status == 400 and out["missing"] == [m["secret.bin"]["sha256"]]
    assert b.request("GET", f"/v1/blobs/{m['secret.bin']['sha256']}")[0] == 404
    status, out = b.post("/v1/artifacts/log", {"project": "iso", "name": _name(), "file": b.ok(
        "POST", "/v1/files/upload", raw=b"b-bytes")["id"], "produced_by": _experiment(a, "iso")})
    assert status == 400 and "produced_by" in out["error"]
    # b's own artifact of the same name is its own, at v1.
    _blob(b, b"mine")
    mine = {"f": {"sha256": hashlib.sha256(b"mine").hexdigest(), "size": 4}}
    assert _log(b, "iso", name, mine)[1]["version"] == "v1"
    assert a.ok("GET", f"/v1/artifacts/{name}/latest", params={"project": "iso"})["manifest"][0]["path"] == "secret.bin"


def test_docs_curl_walkthrough_runs_as_written(orgs: tuple[Api, Api], tmp_path: Path) -> None:
    """The cURL block of docs/api.md's Artifacts section, against the live server."""
    import json

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = text.split("\n## Artifacts\n", 1)[1].split("\n## ", 1)[0]
    block = next(b for b in section.split("```")[1::2] if "curl" in b)
    a, _ = orgs
    # A fresh project per run: the block logs v1 and promotes with expected null.
    project = _name()
    script = block.replace("localhost:8090", a.url.removeprefix("http://")).replace("char-lm", project)
    (tmp_path / "model.pt").write_bytes(os.urandom(4096))
    out = subprocess.run(["bash", "-ec", script], cwd=tmp_path, env={**os.environ, "ARWANDB_API_KEY": a.key},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    answers = [json.loads(line) for line in out.replace("}{", "}\n{").splitlines() if line.strip()]
    blob, logged, moved, resolved = answers
    assert blob["size"] == 4096 and logged["version"] == "v1" and logged["created"] is True
    assert (moved["ref"], moved["version"], moved["previous"]) == ("winner", "v1", None)
    assert resolved["ref"] == "winner" and resolved["manifest"] == [
        {"path": "model.pt", "sha256": blob["sha"], "size": 4096}]
