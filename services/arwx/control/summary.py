"""Read-only summaries: what an agent reads before its next step, and the dashboard's first screen.

Both are one call of bounded size: every list has a cap, and says when it was cut.
"""

from __future__ import annotations

from sqlalchemy import func, select

from arwx.catalog import Catalog
from arwx.catalog.tables import api_keys, orgs, runs
from arwx.control.projects import Projects
from arwx.control.research import Research

BOOTSTRAP_PROJECTS = 100
BOOTSTRAP_RUNS = 20
MAX_CONTEXT_LIMIT = 50


def _run(r) -> dict:  # noqa: ANN001 - a Row
    return {
        "id": r.run_id, "project": r.project, "name": r.name, "status": r.status,
        "created_at": r.created_at / 1000, "fingerprint": r.fingerprint or None,
    }


class Summaries:
    """Agent context and dashboard bootstrap over projects, research and runs."""

    def __init__(self, catalog: Catalog, projects: Projects, research: Research) -> None:
        self.catalog = catalog
        self.projects = projects
        self.research = research

    async def agent_context(self, org: str, project: str, limit: int) -> dict:
        """Goal, best score and whether the target is met, the frontier's last ``limit``
        points, the last ``limit`` experiments with notes and decisions, running runs, the winner."""
        info = await self.projects.get(org, project)
        _, prog = await self.research.project_progress(org, project)
        recent = await self.research.recent_experiments(org, project, limit)
        async with self.catalog.connect() as conn:
            running = (
                await conn.execute(
                    select(runs).where(runs.c.org == org, runs.c.project == project, runs.c.status == "running")
                    .order_by(runs.c.created_at.desc()).limit(limit)
                )
            ).all()
        return {
            "project": project,
            "goal": {k: info[k] for k in ("objective_metric", "lower_is_better", "target")},
            "best": info["best"],
            "target_met": info["target_met"],
            "active_session": info["active_session"],
            "counts": {
                "sessions": info["sessions"], "experiments": info["experiments"], "decisions": info["decisions"],
                "runs": info["runs"], "running": info["running"],
            },
            "frontier": [
                {k: p[k] for k in ("experiment_id", "score", "note", "decided_at")} for p in prog["frontier"][-limit:]
            ],
            "experiments": [
                {k: e[k] for k in ("id", "session_id", "note", "commit", "repro_key", "created_at", "decision")}
                for e in recent
            ],
            "running_runs": [_run(r) for r in running],
            "winner": info["winner"],
        }

    async def bootstrap(self, org: str) -> dict:
        """The org, its projects with goals and best scores, recent runs, and the key count."""
        page = await self.projects.list(org, limit=BOOTSTRAP_PROJECTS)
        async with self.catalog.connect() as conn:
            org_row = (await conn.execute(select(orgs).where(orgs.c.org == org))).first()
            keys = await conn.scalar(
                select(func.count()).select_from(api_keys).where(api_keys.c.org == org, api_keys.c.revoked_at.is_(None))
            )
            recent = (
                await conn.execute(
                    select(runs).where(runs.c.org == org).order_by(runs.c.created_at.desc()).limit(BOOTSTRAP_RUNS)
                )
            ).all()
            n_runs = await conn.scalar(select(func.count()).select_from(runs).where(runs.c.org == org))
        return {
            "org": {"id": org, "name": org_row.name if org_row else org},
            "projects": page["projects"],
            "projects_truncated": page["next"] is not None,
            "recent_runs": [_run(r) for r in recent],
            "runs": int(n_runs or 0),
            "keys": int(keys or 0),
            "limits": {"projects": BOOTSTRAP_PROJECTS, "recent_runs": BOOTSTRAP_RUNS},
        }
