"""Projects implied by runs: list, one, runs with filters, pages and latest values; org-scoped."""

from __future__ import annotations

from tests.helpers import Api, points


def test_projects_runs_filters_and_pages(api: Api) -> None:
    for i in range(5):
        api.ok("POST", "/v1/runs", {"id": f"r{i}", "project": "vision", "name": f"{'sweep' if i % 2 else 'base'}-{i}", "config": {"lr": i}})
    api.ok("POST", "/v1/runs", {"id": "n0", "project": "nlp"})
    api.ok("POST", "/v1/ingest", {"points": points("r1", "w", range(50), key="loss")})
    api.wait_intact("r1", 50)
    api.ok("POST", "/v1/runs/r3/finish", {"writer_totals": {}})

    page = api.ok("GET", "/v1/projects", params={"limit": 1})
    assert [p["name"] for p in page["projects"]] == ["nlp"] and page["next"]
    page = api.ok("GET", "/v1/projects", params={"limit": 1, "cursor": page["next"]})
    assert [(p["name"], p["runs"]) for p in page["projects"]] == [("vision", 5)] and page["next"] is None
    assert [p["name"] for p in api.ok("GET", "/v1/projects", params={"prefix": "vi"})["projects"]] == ["vision"]

    p = api.ok("GET", "/v1/projects/vision")
    assert p["runs"] == 5 and p["by_status"] == {"running": 4, "finished": 1}

    seen, cursor = [], None
    while True:
        page = api.ok("GET", "/v1/projects/vision/runs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += page["runs"]
        cursor = page["next"]
        if not cursor:
            break
    assert sorted(r["id"] for r in seen) == [f"r{i}" for i in range(5)] and len(seen) == 5
    assert [r["created_at"] for r in seen] == sorted((r["created_at"] for r in seen), reverse=True)
    r1 = next(r for r in seen if r["id"] == "r1")
    assert r1["latest"] == {"loss": {"step": 49, "value": 24.5}} and r1["config"] == {"lr": 1}
    assert [r["id"] for r in api.ok("GET", "/v1/projects/vision/runs", params={"status": "finished"})["runs"]] == ["r3"]
    sweep = api.ok("GET", "/v1/projects/vision/runs", params={"name_prefix": "sweep"})["runs"]
    assert sorted(r["id"] for r in sweep) == ["r1", "r3"]
    assert api.get("/v1/projects/vision/runs", status="bogus")[0] == 400
    assert api.get("/v1/projects/vision/runs", cursor="x")[0] == 400
    assert api.get("/v1/projects/nope")[0] == 404
    assert api.get("/v1/projects/nope/runs")[0] == 404


def test_projects_are_org_scoped(api: Api, embedded) -> None:
    api.ok("POST", "/v1/runs", {"id": "x", "project": "private"})
    other = api.with_key(embedded.new_org_key("other"))
    assert other.ok("GET", "/v1/projects")["projects"] == []
    assert other.get("/v1/projects/private")[0] == 404
    assert other.get("/v1/projects/private/runs")[0] == 404
    assert other.get("/v1/runs/x/metrics/stream")[0] == 404
