"""Loads the one DDL text (``schemas/clickhouse.sql``) and applies it."""

from __future__ import annotations

from pathlib import Path

from arwx.store.base import Store


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


async def apply_schema(store: Store) -> None:
    """Create every table if missing (idempotent)."""
    for stmt in ddl_statements():
        await store.command(stmt)
