"""Sessions, experiments, decisions and code snapshots: the research loop, in the catalog.

Invariants:

- Everything is scoped by org; an id of another org is ``NotFound``.
- The newest session of a project (highest ``seq``) is its active one; an
  experiment without a session goes into it.
- An experiment's ``repro_key`` is the SHA-256 of the canonical JSON of its
  commit, the SHA-256 of its whole diff, and its config (keys sorted), so the
  same code and config give the same key on every client.
- The diff text lives in the blob store; over ``MAX_DIFF_BYTES`` a marker
  saying so is stored instead (``diff_truncated``), the key still covers the
  whole diff.
- Decisions are appended, never updated: an experiment's current decision is
  its newest, and the history keeps them all.
- A tree names only blobs the org has uploaded (checked before it is stored).
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
import time
from collections.abc import AsyncIterator

import msgspec
from sqlalchemy import Row, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.catalog.tables import decisions, experiments, projects, sessions
from arwx.control import projects as projects_mod
from arwx.control.artifacts import Artifacts
from arwx.control.errors import Conflict, Invalid, NotFound
from arwx.control.frontier import Goal, progress
from arwx.control.wire import DecisionCreate, ExperimentCreate, SessionCreate, TreePut

MAX_DIFF_BYTES = 1 << 20
MAX_LIST = 1000


def _now() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def repro_key(commit: str | None, diff: str | None, config: dict | None) -> str:
    """sha256 of the canonical JSON {commit, diff_sha256, config} (keys sorted, no spaces)."""
    canonical = msgspec.json.encode(
        {"commit": commit or "", "diff_sha256": hashlib.sha256((diff or "").encode()).hexdigest(), "config": config or {}},
        order="sorted",
    )
    return hashlib.sha256(canonical).hexdigest()


def diff_marker(size: int) -> str:
    return f"# arwx: a diff of {size} bytes was not stored: over the server's {MAX_DIFF_BYTES}-byte cap\n"


def check_path(path: str) -> str:
    """A snapshot path: relative, POSIX, normalized, no control characters."""
    if (
        path.startswith("/")
        or "\\" in path
        or any(ord(c) < 0x20 or c == "\x7f" for c in path)
        or posixpath.normpath(path) != path
        or path.split("/")[0] == ".."
        or path == "."
    ):
        raise Invalid(f"files: {path[:200]!r} is not a relative, normalized path")
    return path


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _session(row: Row, active_id: str | None, n_experiments: int | None = None) -> dict:
    out = {
        "id": row.id, "project": row.project, "tag": row.tag, "branch": row.branch,
        "created_at": row.created_at / 1000, "active": row.id == active_id,
    }
    if n_experiments is not None:
        out["experiments"] = n_experiments
    return out


def _decision(row: Row | None) -> dict | None:
    if row is None:
        return None
    return {"status": row.status, "score": row.score, "metric": row.metric, "decided_at": row.created_at / 1000}


def _experiment(row: Row, decision: dict | None) -> dict:
    m = row._mapping
    has_tree = m["tree"] is not None if "tree" in m else not m["no_tree"]
    return {
        "id": row.id, "project": row.project, "session_id": row.session_id, "note": row.note,
        "commit": row.commit, "parent_commit": row.parent_commit, "diff_sha": row.diff_sha,
        "diff_size": row.diff_size, "diff_truncated": bool(row.diff_truncated), "config": row.config,
        "repro_key": row.repro_key, "has_tree": has_tree,
        "created_at": row.created_at / 1000, "decision": decision,
    }


_EXP_COLS = [c for c in experiments.c if c.name != "tree"]


class Research:
    """Sessions, experiments, decisions and trees of every org."""

    def __init__(self, catalog: Catalog, blobs: BlobStore, artifacts: Artifacts | None = None) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.artifacts = artifacts  # lineage: what an experiment produced

    # --- sessions -------------------------------------------------------

    async def create_session(self, org: str, req: SessionCreate) -> tuple[dict, bool]:
        """A new session; the project is created if it does not exist. It becomes the active one.

        With a client-chosen ``req.id`` that exists already, the existing session is
        answered (``created`` False) when it is of the same project; else ``Conflict``.
        """
        now = _now()
        sid = req.id or new_id("ses")
        try:
            async with self.catalog.begin() as conn:
                if req.id is not None and (old := await self._existing(conn, sessions, org, req.id)) is not None:
                    return self._same_session(old, req), False
                await projects_mod.ensure(conn, org, req.project, now)
                await conn.execute(
                    sessions.insert().values(org=org, id=sid, project=req.project, tag=req.tag, branch=req.branch, created_at=now)
                )
                row = (await conn.execute(select(sessions).where(sessions.c.org == org, sessions.c.id == sid))).one()
        except IntegrityError:
            if req.id is None:
                raise
            async with self.catalog.connect() as conn:  # a concurrent create of the same id won
                old = await self._existing(conn, sessions, org, req.id)
            if old is None:
                raise
            return self._same_session(old, req), False
        return _session(row, sid, 0), True

    @staticmethod
    async def _existing(conn: AsyncConnection, table, org: str, id_: str) -> Row | None:  # noqa: ANN001 - a Table
        cols = [c for c in table.c if c.name != "tree"]
        return (await conn.execute(select(*cols).where(table.c.org == org, table.c.id == id_))).first()

    @staticmethod
    def _same_session(row: Row, req: SessionCreate) -> dict:
        if row.project != req.project:
            raise Conflict(f"id: session {row.id!r} exists already, in project {row.project!r}")
        return _session(row, None)

    async def _session_row(self, conn: AsyncConnection, org: str, session_id: str) -> Row:
        row = (await conn.execute(select(sessions).where(sessions.c.org == org, sessions.c.id == session_id))).first()
        if row is None:
            raise NotFound(f"unknown session {session_id!r}")
        return row

    async def _active(self, conn: AsyncConnection, org: str, project: str) -> str | None:
        return await conn.scalar(
            select(sessions.c.id).where(sessions.c.org == org, sessions.c.project == project)
            .order_by(sessions.c.seq.desc()).limit(1)
        )

    async def project_sessions(self, org: str, project: str, limit: int = 100) -> dict:
        """The project's sessions, newest (the active one) first, with experiment counts."""
        async with self.catalog.connect() as conn:
            await projects_mod.Projects(self.catalog).row(conn, org, project)
            rows = (
                await conn.execute(
                    select(sessions).where(sessions.c.org == org, sessions.c.project == project)
                    .order_by(sessions.c.seq.desc()).limit(limit)
                )
            ).all()
            counts = dict(
                (await conn.execute(
                    select(experiments.c.session_id, func.count())
                    .where(experiments.c.org == org, experiments.c.session_id.in_([r.id for r in rows]))
                    .group_by(experiments.c.session_id)
                )).all()
            ) if rows else {}
        active = rows[0].id if rows else None
        return {"project": project, "sessions": [_session(r, active, int(counts.get(r.id, 0))) for r in rows]}

    # --- experiments ----------------------------------------------------

    async def create_experiment(self, org: str, req: ExperimentCreate) -> tuple[dict, bool]:
        """Record one tried change in ``session_id`` (or the project's active session).

        With a client-chosen ``req.id`` that exists already, the existing experiment is
        answered (``created`` False) when the request describes it (same session or
        project, same ``repro_key``); else ``Conflict``.
        """
        diff = req.diff or ""
        raw = diff.encode()
        truncated = len(raw) > MAX_DIFF_BYTES
        stored = diff_marker(len(raw)).encode() if truncated else raw
        diff_sha = None
        if req.diff is not None:
            diff_sha = (await self.blobs.put(org, _chunks(stored))).sha
        key = repro_key(req.commit, req.diff, req.config)
        now = _now()
        eid = req.id or new_id("exp")
        if req.id is not None:
            async with self.catalog.connect() as conn:
                old = await self._existing(conn, experiments, org, req.id)
            if old is not None:
                return await self._same_experiment(org, old, req, key), False
        try:
            return await self._insert_experiment(org, eid, req, key, now, raw, truncated, diff_sha), True
        except IntegrityError:
            if req.id is None:
                raise
            async with self.catalog.connect() as conn:  # a concurrent create of the same id won
                old = await self._existing(conn, experiments, org, req.id)
            if old is None:
                raise
            return await self._same_experiment(org, old, req, key), False

    async def _same_experiment(self, org: str, row: Row, req: ExperimentCreate, key: str) -> dict:
        """The experiment already made under this client id, if the request describes it."""
        if (req.session_id is not None and req.session_id != row.session_id) or (
            req.project is not None and req.project != row.project
        ) or key != row.repro_key:
            raise Conflict(f"id: experiment {row.id!r} exists already, with another session, project or code")
        return await self.get_experiment(org, row.id)

    async def _insert_experiment(self, org: str, eid: str, req: ExperimentCreate, key: str, now: int,
                                 raw: bytes, truncated: bool, diff_sha: str | None) -> dict:
        async with self.catalog.begin() as conn:
            if req.session_id is not None:
                session = await self._session_row(conn, org, req.session_id)
                if req.project is not None and req.project != session.project:
                    raise Invalid(f"project: session {req.session_id!r} belongs to project {session.project!r}, not {req.project!r}")
                sid, project = session.id, session.project
            elif req.project is not None:
                await projects_mod.Projects(self.catalog).row(conn, org, req.project)
                sid = await self._active(conn, org, req.project)
                if sid is None:
                    raise Invalid(f"session_id: project {req.project!r} has no session yet (POST /v1/sessions first)")
                project = req.project
            else:
                raise Invalid("session_id: give a session_id, or a project whose active session to use")
            await conn.execute(
                experiments.insert().values(
                    org=org, id=eid, project=project, session_id=sid, note=req.note, commit=req.commit,
                    parent_commit=req.parent_commit, diff_sha=diff_sha, diff_size=len(raw), diff_truncated=truncated,
                    config=req.config or {}, repro_key=key, tree=None, created_at=now,
                )
            )
            row = (await conn.execute(select(*_EXP_COLS, experiments.c.tree).where(experiments.c.org == org, experiments.c.id == eid))).one()
        return _experiment(row, None)

    async def _experiment_row(self, conn: AsyncConnection, org: str, eid: str, with_tree: bool = False) -> Row:
        cols = [*_EXP_COLS, experiments.c.tree] if with_tree else [*_EXP_COLS, experiments.c.tree.is_(None).label("no_tree")]
        row = (await conn.execute(select(*cols).where(experiments.c.org == org, experiments.c.id == eid))).first()
        if row is None:
            raise NotFound(f"unknown experiment {eid!r}")
        return row

    async def get_experiment(self, org: str, eid: str) -> dict:
        """The experiment with its current decision and every decision made on it, oldest first."""
        async with self.catalog.connect() as conn:
            row = await self._experiment_row(conn, org, eid, with_tree=True)
            history = (
                await conn.execute(
                    select(decisions).where(decisions.c.org == org, decisions.c.experiment_id == eid).order_by(decisions.c.seq)
                )
            ).all()
        out = _experiment(row, _decision(history[-1]) if history else None)
        out["decisions"] = [_decision(d) for d in history]
        out["produced"] = await self.artifacts.produced_by(org, eid) if self.artifacts is not None else []
        return out

    async def diff_text(self, org: str, eid: str) -> tuple[bytes, bool]:
        """The stored diff (or its marker) and whether it is the marker."""
        async with self.catalog.connect() as conn:
            row = await self._experiment_row(conn, org, eid)
        if row.diff_sha is None:
            return b"", False
        return await self._read_blob(org, row.diff_sha, MAX_DIFF_BYTES * 2) or b"", bool(row.diff_truncated)

    async def _read_blob(self, org: str, sha: str, cap: int) -> bytes | None:
        blob = await self.blobs.open(org, sha)
        if blob is None:
            return None
        try:
            buf = bytearray()
            async for chunk in blob.chunks():
                buf += chunk
                if len(buf) > cap:
                    return None
            return bytes(buf)
        finally:
            await blob.close()

    # --- decisions ------------------------------------------------------

    async def decide(self, org: str, eid: str, req: DecisionCreate) -> dict:
        """Append a decision; it becomes the experiment's current one. Returns the experiment."""
        async with self.catalog.begin() as conn:
            row = await self._experiment_row(conn, org, eid)
            await conn.execute(
                decisions.insert().values(
                    org=org, experiment_id=eid, project=row.project, session_id=row.session_id, status=req.status,
                    score=req.score, metric=req.metric, created_at=_now(),
                )
            )
        return await self.get_experiment(org, eid)

    # --- trees ----------------------------------------------------------

    async def put_tree(self, org: str, eid: str, req: TreePut) -> dict:
        """Set the experiment's code snapshot; every SHA must be a blob the org uploaded."""
        for path in req.files:
            check_path(path)
        async with self.catalog.connect() as conn:
            await self._experiment_row(conn, org, eid)
        shas = sorted({e.sha256 for e in req.files.values()})
        missing = await self.blobs.missing(org, shas)
        if missing:
            raise Invalid(
                f"files: {len(missing)} blob(s) were never uploaded (POST /v1/blobs first): {', '.join(missing[:20])}"
                + (" …" if len(missing) > 20 else ""),
                extra={"missing": missing},
            )
        tree = {p: {"sha256": e.sha256, "size": e.size, "mode": e.mode} for p, e in sorted(req.files.items())}
        async with self.catalog.begin() as conn:
            await conn.execute(update(experiments).where(experiments.c.org == org, experiments.c.id == eid).values(tree=tree))
        return {"experiment_id": eid, "files": tree, "total_size": sum(e["size"] for e in tree.values())}

    async def get_tree(self, org: str, eid: str) -> dict:
        async with self.catalog.connect() as conn:
            row = await self._experiment_row(conn, org, eid, with_tree=True)
        if row.tree is None:
            raise NotFound(f"experiment {eid!r} has no code snapshot (PUT /v1/experiments/{eid}/tree)")
        return {"experiment_id": eid, "files": row.tree, "total_size": sum(e["size"] for e in row.tree.values())}

    async def tree_diff(self, org: str, a: str, b: str, text_cap: int, total_cap: int) -> dict:
        """Paths added, removed and changed from ``a``'s tree to ``b``'s, with unified diffs of
        changed UTF-8 files up to ``text_cap`` bytes each and ``total_cap`` in all."""
        from arwx.control.trees import diff_trees

        ta = (await self.get_tree(org, a))["files"]
        tb = (await self.get_tree(org, b))["files"]
        return await diff_trees(a, b, ta, tb, lambda sha, cap: self._read_blob(org, sha, cap), text_cap, total_cap)

    # --- progress -------------------------------------------------------

    async def _judged(self, conn: AsyncConnection, org: str, project: str | None, session_id: str | None) -> list[dict]:
        """Experiments with a current decision that has a score, oldest first."""
        e, d = experiments, decisions
        cond = [e.c.org == org]
        cond.append(e.c.project == project if project is not None else e.c.session_id == session_id)
        rows = await conn.execute(
            select(e.c.id, e.c.session_id, e.c.note, d.c.status, d.c.score, d.c.metric, d.c.created_at)
            .select_from(
                e.join(d, and_(d.c.org == e.c.org, d.c.experiment_id == e.c.id, d.c.seq.in_(projects_mod.current_decisions(org))))
            )
            .where(*cond)
            .order_by(e.c.seq)
        )
        return [
            {
                "experiment_id": r[0], "session_id": r[1], "note": r[2],
                "decision": {"status": r[3], "score": r[4], "metric": r[5], "decided_at": r[6] / 1000},
            }
            for r in rows
        ]

    async def _goal(self, conn: AsyncConnection, org: str, project: str) -> Goal:
        row = (await conn.execute(select(projects).where(projects.c.org == org, projects.c.name == project))).first()
        if row is None:
            raise NotFound(f"unknown project {project!r}")
        return projects_mod.goal_of(row)

    async def project_progress(self, org: str, project: str) -> tuple[Goal, dict]:
        async with self.catalog.connect() as conn:
            goal = await self._goal(conn, org, project)
            rows = await self._judged(conn, org, project, None)
        return goal, {"project": project, **progress(goal, rows)}

    async def session_progress(self, org: str, session_id: str) -> tuple[Goal, dict]:
        async with self.catalog.connect() as conn:
            session = await self._session_row(conn, org, session_id)
            goal = await self._goal(conn, org, session.project)
            rows = await self._judged(conn, org, None, session_id)
        return goal, {"project": session.project, "session_id": session_id, "tag": session.tag, **progress(goal, rows)}

    async def recent_experiments(self, org: str, project: str, limit: int) -> list[dict]:
        """The project's newest experiments, newest first, each with its current decision."""
        e, d = experiments, decisions
        async with self.catalog.connect() as conn:
            rows = (
                await conn.execute(
                    select(*_EXP_COLS, e.c.tree.is_(None).label("no_tree"))
                    .where(e.c.org == org, e.c.project == project)
                    .order_by(e.c.seq.desc()).limit(limit)
                )
            ).all()
            current = {
                r.experiment_id: r
                for r in await conn.execute(
                    select(d).where(d.c.org == org, d.c.experiment_id.in_([r.id for r in rows]),
                                    d.c.seq.in_(projects_mod.current_decisions(org)))
                )
            } if rows else {}
        return [_experiment(r, _decision(current.get(r.id))) for r in rows]
