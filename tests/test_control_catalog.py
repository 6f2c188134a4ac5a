"""The control plane's catalog migration (0005), on SQLite and a real PostgreSQL.

A catalog from before it (0001) keeps its runs, and every project those runs
named becomes a project row (no goal yet), with the first run's time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import select

from arwx.catalog import Catalog
from arwx.catalog.migrate import alembic_config
from arwx.catalog.tables import orgs, projects, runs


async def test_upgrade_from_0001_turns_run_projects_into_projects(catalog_url: str) -> None:
    catalog = Catalog.open(catalog_url, Path("/nonexistent"))
    # Start at 0001 by hand, as a catalog written before the control plane.
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(catalog.url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
        await conn.execute(orgs.insert(), [{"org": "o1", "name": "one", "created_at": 1}, {"org": "o2", "name": "two", "created_at": 1}])
        base = {"name": "r", "status": "running", "config": {}, "writer_ids": [], "fingerprint": {}, "finished_at": None, "version": 1}
        await conn.execute(
            runs.insert(),
            [
                {**base, "org": "o1", "run_id": "a", "project": "vision", "created_at": 2000},
                {**base, "org": "o1", "run_id": "b", "project": "vision", "created_at": 1000},
                {**base, "org": "o1", "run_id": "c", "project": "nlp", "created_at": 3000},
                {**base, "org": "o2", "run_id": "a", "project": "vision", "created_at": 5000},
                {**base, "org": "o2", "run_id": "x", "project": "p" * 200, "created_at": 5000},  # too long to keep
            ],
        )
    await engine.dispose()
    await catalog.start()
    try:
        async with catalog.connect() as conn:
            rows = (await conn.execute(select(projects).order_by(projects.c.org, projects.c.name))).all()
            assert await conn.scalar(select(runs.c.project).where(runs.c.run_id == "x")) == "p" * 200
    finally:
        await catalog.stop()
    got = [(r.org, r.name, r.created_at, r.objective_metric, bool(r.lower_is_better)) for r in rows]
    assert got == [("o1", "nlp", 3000, None, True), ("o1", "vision", 1000, None, True), ("o2", "vision", 5000, None, True)]
