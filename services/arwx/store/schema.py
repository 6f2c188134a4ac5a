"""Loads the one DDL text (``schemas/clickhouse.sql``) and applies it.

Tables that a materialized view fills from ``points`` see only inserts made
after the view exists; each is filled once from the stored points when a
store made before it starts (recorded in ``store_info``). Every such table is
idempotent (min/max), so a fill that overlaps the view's own inserts, or runs
twice, changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from arwx.store.base import Store

# (table, its materialized view over points): filled from points once.
BACKFILLED = (("chart_cells", "chart_cells_mv"),)


def schemas_dir() -> Path:
    """``schemas/`` of the source tree, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_schemas"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "schemas"


def ddl_statements() -> list[str]:
    text = (schemas_dir() / "clickhouse.sql").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split("\n;") if s.strip()]


def view_select(view: str) -> tuple[str, str]:
    """(target table, SELECT) of a materialized view of the DDL text."""
    for stmt in ddl_statements():
        m = re.match(rf"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO (\w+) AS\s+(.*)", stmt, re.S)
        if m:
            return m.group(1), m.group(2)
    raise LookupError(f"no materialized view {view} in clickhouse.sql")


async def apply_schema(store: Store) -> None:
    """Create every table if missing (idempotent), then fill new derived tables once."""
    for stmt in ddl_statements():
        await store.command(stmt)
    for table, view in BACKFILLED:
        name = f"filled:{table}"
        ((done,),) = await store.rows("SELECT count() FROM store_info WHERE name = {n:String}", {"n": name})
        if done:
            continue
        target, select = view_select(view)
        await store.command(f"INSERT INTO {target} {select}")
        await store.command(
            "INSERT INTO store_info (name, value, created_at)"
            " VALUES ({n:String}, 'from points', now64(3))",
            {"n": name},
        )
