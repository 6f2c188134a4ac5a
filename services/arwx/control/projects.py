"""Projects and their goals, in the catalog, always within one org.

A project exists once POST /v1/projects or the first run or session naming it
creates it (``ensure``, safe when two processes race). Counts come from the
catalog (runs, sessions, experiments, decisions), the best score from the
experiments' current decisions under the rule of ``frontier.counts``.
"""

from __future__ import annotations

import time

from msgspec import UNSET
from sqlalchemy import Row, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.catalog import Catalog
from arwx.catalog.tables import decisions, experiments, projects, runs, sessions
from arwx.control.artifacts import Artifacts
from arwx.control.errors import NotFound
from arwx.control.frontier import Goal
from arwx.control.wire import ProjectUpsert

MAX_PAGE = 1000
MAX_NAME = 128  # projects.name; older run project names may be longer and stay project-less


def _now() -> int:
    return int(time.time() * 1000)


async def ensure(conn: AsyncConnection, org: str, name: str, now_ms: int | None = None) -> None:
    """Create project ``name`` (no goal yet) unless it exists; a concurrent create is no error."""
    now_ms = now_ms or _now()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(
        dialect.insert(projects)
        .values(org=org, name=name, objective_metric=None, lower_is_better=True, target=None,
                created_at=now_ms, updated_at=now_ms)
        .on_conflict_do_nothing(index_elements=["org", "name"])
    )


def goal_of(row: Row) -> Goal:
    return Goal(row.objective_metric, bool(row.lower_is_better), row.target)


def current_decisions(org: str):  # noqa: ANN201 - a SQL subquery
    """The seq of each experiment's newest decision, in ``org``."""
    return (
        select(func.max(decisions.c.seq).label("seq"))
        .where(decisions.c.org == org)
        .group_by(decisions.c.experiment_id)
        .scalar_subquery()
    )


async def best_scores(conn: AsyncConnection, org: str, names: list[str]) -> dict[str, float]:
    """The best score of each project in ``names`` (absent: nothing counts yet)."""
    if not names:
        return {}
    p, d = projects, decisions
    rows = await conn.execute(
        select(p.c.name, p.c.lower_is_better, func.min(d.c.score), func.max(d.c.score))
        .select_from(d.join(p, and_(p.c.org == d.c.org, p.c.name == d.c.project)))
        .where(
            d.c.org == org,
            d.c.project.in_(names),
            d.c.seq.in_(current_decisions(org)),
            d.c.status == "keep",
            d.c.score.is_not(None),
            or_(d.c.metric.is_(None), p.c.objective_metric.is_(None), d.c.metric == p.c.objective_metric),
        )
        .group_by(p.c.name, p.c.lower_is_better)
    )
    return {name: (lo if lower else hi) for name, lower, lo, hi in rows}


async def _run_counts(conn: AsyncConnection, org: str, names: list[str]) -> dict[str, tuple[int, int, int | None]]:
    rows = await conn.execute(
        select(
            runs.c.project, func.count(), func.sum(case((runs.c.status == "running", 1), else_=0)),
            func.max(runs.c.created_at),
        )
        .where(runs.c.org == org, runs.c.project.in_(names))
        .group_by(runs.c.project)
    )
    return {r[0]: (int(r[1]), int(r[2] or 0), r[3]) for r in rows}


def _public(row: Row, runs_n: tuple[int, int, int | None], best: float | None) -> dict:
    goal = goal_of(row)
    return {
        "name": row.name,
        **goal.public(),
        "runs": runs_n[0],
        "running": runs_n[1],
        "created_at": row.created_at / 1000,
        "updated_at": row.updated_at / 1000,
        "last_run_at": None if runs_n[2] is None else runs_n[2] / 1000,
        "best": best,
        "target_met": goal.met(best),
    }


class Projects:
    """Projects of every org; each call names the org it acts for."""

    def __init__(self, catalog: Catalog, artifacts: Artifacts | None = None) -> None:
        self.catalog = catalog
        self.artifacts = artifacts  # for the winner; None: no winner is looked up

    async def upsert(self, org: str, req: ProjectUpsert) -> tuple[dict, bool]:
        """Create the project or update the goal fields the request names; (project, created)."""
        now = _now()
        changes = {
            k: v for k, v in (
                ("objective_metric", req.objective_metric), ("lower_is_better", req.lower_is_better),
                ("target", req.target),
            ) if v is not UNSET
        }
        async with self.catalog.begin() as conn:
            existed = await conn.scalar(
                select(func.count()).select_from(projects).where(projects.c.org == org, projects.c.name == req.name)
            )
            await ensure(conn, org, req.name, now)
            if changes:
                await conn.execute(
                    update(projects)
                    .where(projects.c.org == org, projects.c.name == req.name)
                    .values(**changes, updated_at=now)
                )
        return await self.get(org, req.name), not existed

    async def row(self, conn: AsyncConnection, org: str, name: str) -> Row:
        """The project's row, or ``NotFound`` (also for another org's project)."""
        row = (await conn.execute(select(projects).where(projects.c.org == org, projects.c.name == name))).first()
        if row is None:
            raise NotFound(f"unknown project {name!r}")
        return row

    async def exists(self, org: str, name: str) -> bool:
        async with self.catalog.connect() as conn:
            return (
                await conn.scalar(select(projects.c.name).where(projects.c.org == org, projects.c.name == name))
            ) is not None

    async def list(self, org: str, prefix: str = "", limit: int = 100, after: str | None = None) -> dict:
        """Projects by name (keyset-paged: ``next`` is the cursor), with goal, run counts and best score."""
        cond = [projects.c.org == org, projects.c.name > (after or "")]
        if prefix:
            cond.append(func.substr(projects.c.name, 1, len(prefix)) == prefix)
        async with self.catalog.connect() as conn:
            rows = (
                await conn.execute(select(projects).where(*cond).order_by(projects.c.name).limit(limit + 1))
            ).all()
            more, rows = len(rows) > limit, rows[:limit]
            names = [r.name for r in rows]
            counts = await _run_counts(conn, org, names)
            best = await best_scores(conn, org, names)
        return {
            "projects": [_public(r, counts.get(r.name, (0, 0, None)), best.get(r.name)) for r in rows],
            "next": rows[-1].name if more and rows else None,
        }

    async def get(self, org: str, name: str) -> dict:
        """One project: goal, counts (runs by status, sessions, experiments, decisions), best score, active session."""
        async with self.catalog.connect() as conn:
            row = await self.row(conn, org, name)
            by_status = {
                s: int(n)
                for s, n in await conn.execute(
                    select(runs.c.status, func.count()).where(runs.c.org == org, runs.c.project == name).group_by(runs.c.status)
                )
            }
            last_run = await conn.scalar(select(func.max(runs.c.created_at)).where(runs.c.org == org, runs.c.project == name))
            n_sessions = await conn.scalar(select(func.count()).where(sessions.c.org == org, sessions.c.project == name))
            n_experiments = await conn.scalar(
                select(func.count()).where(experiments.c.org == org, experiments.c.project == name)
            )
            by_decision = {
                s: int(n)
                for s, n in await conn.execute(
                    select(decisions.c.status, func.count())
                    .where(decisions.c.org == org, decisions.c.project == name, decisions.c.seq.in_(current_decisions(org)))
                    .group_by(decisions.c.status)
                )
            }
            active = await conn.scalar(
                select(sessions.c.id).where(sessions.c.org == org, sessions.c.project == name)
                .order_by(sessions.c.seq.desc()).limit(1)
            )
            best = (await best_scores(conn, org, [name])).get(name)
        winner = await self.artifacts.winner(org, name) if self.artifacts is not None else None
        out = _public(row, (sum(by_status.values()), by_status.get("running", 0), last_run), best)
        out.update(
            by_status=by_status,
            sessions=int(n_sessions or 0),
            experiments=int(n_experiments or 0),
            decisions={"keep": by_decision.get("keep", 0), "drop": by_decision.get("drop", 0)},
            active_session=active,
            winner=winner,
        )
        return out

