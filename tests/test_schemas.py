"""The contracts in schemas/ agree with the code."""

from __future__ import annotations

import importlib.util
import json
import re

import msgspec

from arwx.store.schema import ddl_statements
from arwx.wire import IngestBatch, Point
from tests.helpers import ROOT

_spec = importlib.util.spec_from_file_location("gen_schemas", ROOT / "scripts" / "gen_schemas.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def test_committed_schemas_match_the_code() -> None:
    for name, fn in gen.FILES.items():
        committed = (ROOT / "schemas" / name).read_text()
        assert committed == gen.render(fn()), f"schemas/{name} is stale: run python scripts/gen_schemas.py"


def test_openapi_lists_exactly_the_served_routes(embedded) -> None:
    doc = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in embedded.server.runner.app.router.routes()
        if r.method != "HEAD"
    }
    assert documented == served


def test_wire_schema_examples_validate_like_the_code() -> None:
    """A JSON Schema validator is not a dependency; check the schema's
    constraints against msgspec's behaviour on the same examples instead."""
    schema = json.loads((ROOT / "schemas" / "wire.schema.json").read_text())["$defs"]["Point"]
    assert set(schema["required"]) == {"seq", "step", "key"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["seq"]["minimum"] == 0
    good = {"seq": 0, "step": 0, "key": "loss", "value": 1.5, "ts": 1.7e9, "run_id": "r", "writer_id": "w"}
    msgspec.convert(good, Point)
    for bad in ({**good, "seq": -1}, {**good, "key": ""}, {**good, "run_id": "a b"}, {**good, "x": 1}):
        try:
            msgspec.convert(bad, Point)
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"accepted {bad}")
    msgspec.convert({"points": [good]}, IngestBatch)


def test_ddl_is_one_text_of_idempotent_statements() -> None:
    stmts = ddl_statements()
    creates = [s for s in stmts if s.startswith("CREATE")]
    assert len(creates) == 10  # orgs, api_keys and run_writers moved to the catalog (services/arwx/catalog)
    assert all(s.startswith(("CREATE TABLE IF NOT EXISTS", "CREATE MATERIALIZED VIEW IF NOT EXISTS")) for s in creates)
    # Columns added later, and tables replaced, for stores made before: idempotent too.
    alters = [s for s in stmts if not s.startswith(("CREATE", "DROP"))]
    assert all(re.fullmatch(r"ALTER TABLE \w+ ADD COLUMN IF NOT EXISTS [^;]+", s) for s in alters), alters
    drops = [s for s in stmts if s.startswith("DROP")]
    assert all(re.fullmatch(r"DROP (VIEW|TABLE) IF EXISTS \w+", s) for s in drops), drops
    assert not any(f" {s.split()[-1]}\n" in c or f" {s.split()[-1]} " in c for s in drops for c in creates)
    assert all("org" in s for s in creates if "dead_letters" not in s and "store_info" not in s)
    assert not any("now()" in s for s in stmts)  # the consumer stamps times: retries stay identical
