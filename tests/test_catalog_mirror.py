"""ClickHouse's ``runs`` table follows the catalog, so SQL on ClickHouse can label points by
project and run name (the queries of docs/grafana.md, run here on chDB)."""

from __future__ import annotations

import re
from pathlib import Path

from arwx.runs import Runs
from tests.helpers import Api, points

ROOT = Path(__file__).resolve().parent.parent


def _grafana_query(title: str) -> str:
    """The SQL block after ``title`` in docs/grafana.md, with Grafana's macros filled in."""
    doc = (ROOT / "docs" / "grafana.md").read_text()
    sql = re.search(re.escape(title) + r".*?```sql\n(.*?)```", doc, re.S).group(1)
    sql = sql.replace("$__timeInterval(p.ts)", "toStartOfMinute(p.ts)").replace("$__timeFilter(p.ts)", "1")
    return sql


def test_runs_are_mirrored_and_label_points(embedded, api: Api) -> None:
    key = embedded.call(embedded.server.tenancy.authenticate(api.key))
    org = key.org
    api.ok("POST", "/v1/runs", {"id": "m1", "project": "mirror", "name": "baseline"})
    api.ok("POST", "/v1/runs", {"id": "m2", "project": "mirror", "name": "bigger lr"})
    api.ok("POST", "/v1/runs", {"id": "m3", "project": "elsewhere"})
    for run in ("m1", "m2", "m3"):
        api.ok("POST", "/v1/ingest", {"points": points(run, "w", range(10))})
        api.wait_intact(run, 10)
    api.ok("POST", "/v1/runs/m1/finish", {"status": "finished", "writer_totals": {"w": 10}})
    store = embedded.server.store
    rows = embedded.call(store.rows(
        "SELECT run_id, project, name, status FROM runs FINAL WHERE org = {org:String} ORDER BY run_id", {"org": org}
    ))
    assert rows == [("m1", "mirror", "baseline", "finished"), ("m2", "mirror", "bigger lr", "running"),
                    ("m3", "elsewhere", "m3", "running")]
    variable = _grafana_query("A variable for the runs of one project").replace("'$org'", "{org:String}")
    variable = variable.replace("'$project'", "'mirror'")
    assert sorted(embedded.call(store.rows(variable, {"org": org}))) == [("baseline", "m1"), ("bigger lr", "m2")]
    chart = _grafana_query("A chart of one key over every run of a project").replace("'$org'", "{org:String}")
    chart = chart.replace("'$project'", "'mirror'").replace("'$key'", "'loss'")
    series = {r[1] for r in embedded.call(store.rows(chart, {"org": org}))}
    assert series == {"baseline", "bigger lr"}


def test_start_up_sync_repairs_a_mirror_write_that_never_happened(embedded, api: Api) -> None:
    key = embedded.call(embedded.server.tenancy.authenticate(api.key))
    unmirrored = Runs(embedded.server.catalog)  # no mirror: as if ClickHouse was down at the write
    embedded.call(unmirrored.create(key.org, "lost", "p", "n", None, None))
    q = "SELECT name FROM runs FINAL WHERE org = {org:String} AND run_id = 'lost'"
    assert embedded.call(embedded.server.store.rows(q, {"org": key.org})) == []
    copied = embedded.call(embedded.server.components.runs.sync_mirror())
    assert copied >= 1
    assert embedded.call(embedded.server.store.rows(q, {"org": key.org})) == [("n",)]
    assert embedded.call(embedded.server.components.runs.sync_mirror()) == 0  # nothing left to copy
