"""What MLflow has and arwx's run registry does not, in one SQLite file.

Invariants:

- Everything is keyed by organization first; no lookup crosses orgs.
- Experiment ids are per-org integers, handed out as strings ("0" is
  ``Default``, made on first use), as MLflow's own SQL store does.
- Metric seqs of a run's writer ``mlflow`` are reserved atomically
  (``reserve``): a request's points get ``[first, first + n)``. A request is
  named by a digest (its ``Idempotency-Key``, else a hash of its metrics);
  the same digest gets the same seqs again, so a retried request overwrites
  its own points (the store keeps one per (writer, seq)) instead of adding
  copies. A reservation whose write failed is given back if nothing was
  reserved after it, so no gap is left behind.
- Writes are fsynced (``synchronous=FULL``, as the embedded log): a seq
  reservation must survive a crash like the points it numbers, or seqs would
  be handed out twice. Only the latest values are written without (derived).
- Every call runs in one transaction on one connection, off the event loop,
  behind one lock; values reach SQL only as parameters.

This moves to the relational catalog (one Alembic migration) once that is on
main; the methods are the interface the service uses.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
  org TEXT NOT NULL, experiment_id INTEGER NOT NULL, name TEXT NOT NULL,
  lifecycle_stage TEXT NOT NULL, creation_time INTEGER NOT NULL, last_update_time INTEGER NOT NULL,
  tags TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (org, experiment_id), UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS runs (
  org TEXT NOT NULL, run_id TEXT NOT NULL, experiment_id INTEGER NOT NULL, run_name TEXT NOT NULL,
  user_id TEXT NOT NULL, status TEXT NOT NULL, start_time INTEGER NOT NULL, end_time INTEGER,
  lifecycle_stage TEXT NOT NULL, params TEXT NOT NULL, tags TEXT NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org, run_id));
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (org, experiment_id);
CREATE TABLE IF NOT EXISTS latest_metrics (
  org TEXT NOT NULL, run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL, timestamp INTEGER NOT NULL,
  step INTEGER NOT NULL, PRIMARY KEY (org, run_id, key));
CREATE TABLE IF NOT EXISTS requests (
  org TEXT NOT NULL, run_id TEXT NOT NULL, digest TEXT NOT NULL, first_seq INTEGER NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (org, run_id, digest));
CREATE TABLE IF NOT EXISTS artifacts (
  org TEXT NOT NULL, run_id TEXT NOT NULL, path TEXT NOT NULL, sha TEXT NOT NULL, size INTEGER NOT NULL,
  PRIMARY KEY (org, run_id, path));
"""


@dataclass
class Experiment:
    org: str
    experiment_id: int
    name: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunRow:
    org: str
    run_id: str
    experiment_id: int
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    params: dict[str, str]
    tags: dict[str, str]
    next_seq: int = 0
    metrics: dict[str, tuple[float | None, int, int]] = field(default_factory=dict)  # key -> (value, ts, step)


class ParamChanged(ValueError):
    """A param logged again with another value (MLflow refuses that too)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowState:
    """The adapter's tables; every method is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        def open_db() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            return db

        self._db = await asyncio.to_thread(open_db)

    async def stop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """``fn`` in one transaction; ``durable=False`` skips the fsync, for what can be
        derived again from the points (the latest values), as it costs one per request."""

        def run() -> T:
            assert self._db is not None, "MlflowState not started"
            with self._lock:
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return out

        return await asyncio.to_thread(run)

    # -- experiments ---------------------------------------------------------------------------
    @staticmethod
    def _experiment(r: tuple) -> Experiment:
        return Experiment(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))

    @staticmethod
    def _ensure_default(db: sqlite3.Connection, org: str) -> None:
        now = _now_ms()
        db.execute(
            "INSERT OR IGNORE INTO experiments VALUES (?, 0, 'Default', 'active', ?, ?, '{}')", (org, now, now)
        )

    async def create_experiment(self, org: str, name: str, tags: dict[str, str]) -> Experiment | None:
        """The new experiment, or None if the org has one of that name."""

        def fn(db: sqlite3.Connection) -> Experiment | None:
            self._ensure_default(db, org)
            if db.execute("SELECT 1 FROM experiments WHERE org = ? AND name = ?", (org, name)).fetchone():
                return None
            (top,) = db.execute("SELECT max(experiment_id) FROM experiments WHERE org = ?", (org,)).fetchone()
            now = _now_ms()
            e = Experiment(org, int(top) + 1, name, "active", now, now, tags)
            db.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (org, e.experiment_id, name, "active", now, now, json.dumps(tags)))
            return e

        return await self._tx(fn)

    async def experiment(self, org: str, *, experiment_id: int | None = None, name: str | None = None) -> Experiment | None:
        def fn(db: sqlite3.Connection) -> Experiment | None:
            self._ensure_default(db, org)
            if name is not None:
                r = db.execute("SELECT * FROM experiments WHERE org = ? AND name = ?", (org, name)).fetchone()
            else:
                r = db.execute("SELECT * FROM experiments WHERE org = ? AND experiment_id = ?",
                               (org, experiment_id)).fetchone()
            return self._experiment(r) if r else None

        return await self._tx(fn)

    async def experiments(self, org: str) -> list[Experiment]:
        def fn(db: sqlite3.Connection) -> list[Experiment]:
            self._ensure_default(db, org)
            rows = db.execute("SELECT * FROM experiments WHERE org = ? ORDER BY experiment_id", (org,)).fetchall()
            return [self._experiment(r) for r in rows]

        return await self._tx(fn)

    async def update_experiment(self, org: str, experiment_id: int, *, name: str | None = None,
                                lifecycle_stage: str | None = None, tags: dict[str, str] | None = None) -> bool:
        """False if there is no such experiment; ``ValueError`` if ``name`` is taken."""

        def fn(db: sqlite3.Connection) -> bool:
            r = db.execute("SELECT * FROM experiments WHERE org = ? AND experiment_id = ?",
                           (org, experiment_id)).fetchone()
            if r is None:
                return False
            e = self._experiment(r)
            if name is not None and name != e.name:
                if db.execute("SELECT 1 FROM experiments WHERE org = ? AND name = ?", (org, name)).fetchone():
                    raise ValueError(f"an experiment named {name!r} already exists")
                e.name = name
            e.lifecycle_stage = lifecycle_stage or e.lifecycle_stage
            e.tags.update(tags or {})
            db.execute("UPDATE experiments SET name = ?, lifecycle_stage = ?, tags = ?, last_update_time = ?"
                       " WHERE org = ? AND experiment_id = ?",
                       (e.name, e.lifecycle_stage, json.dumps(e.tags), _now_ms(), org, experiment_id))
            return True

        return await self._tx(fn)

    # -- runs ------------------------------------------------------------------------------------
    @staticmethod
    def _run(r: tuple) -> RunRow:
        return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]), json.loads(r[10]), r[11])

    @staticmethod
    def _with_metrics(db: sqlite3.Connection, runs: list[RunRow]) -> list[RunRow]:
        by_id = {r.run_id: r for r in runs}
        if not runs:
            return runs
        org = runs[0].org
        ids = list(by_id)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            for run_id, key, value, ts, step in db.execute(
                f"SELECT run_id, key, value, timestamp, step FROM latest_metrics WHERE org = ? AND run_id IN ({marks})",
                (org, *part),
            ):
                by_id[run_id].metrics[key] = (value, ts, step)
        return runs

    async def create_run(self, run: RunRow) -> None:
        def fn(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                       (run.org, run.run_id, run.experiment_id, run.run_name, run.user_id, run.status,
                        run.start_time, run.end_time, run.lifecycle_stage, json.dumps(run.params),
                        json.dumps(run.tags)))

        await self._tx(fn)

    async def run(self, org: str, run_id: str) -> RunRow | None:
        def fn(db: sqlite3.Connection) -> RunRow | None:
            r = db.execute("SELECT * FROM runs WHERE org = ? AND run_id = ?", (org, run_id)).fetchone()
            return self._with_metrics(db, [self._run(r)])[0] if r else None

        return await self._tx(fn)

    async def runs(self, org: str, experiment_ids: list[int]) -> list[RunRow]:
        def fn(db: sqlite3.Connection) -> list[RunRow]:
            marks = ",".join("?" * len(experiment_ids))
            rows = db.execute(f"SELECT * FROM runs WHERE org = ? AND experiment_id IN ({marks})",
                              (org, *experiment_ids)).fetchall()
            return self._with_metrics(db, [self._run(r) for r in rows])

        return await self._tx(fn) if experiment_ids else []

    async def update_run(self, org: str, run_id: str, **changes: Any) -> RunRow | None:
        """Set columns (status, end_time, run_name, lifecycle_stage); the run after, or None."""
        allowed = {"status", "end_time", "run_name", "lifecycle_stage"}
        assert set(changes) <= allowed, changes  # column names are ours, never the client's

        def fn(db: sqlite3.Connection) -> RunRow | None:
            if changes:
                sets = ", ".join(f"{c} = ?" for c in changes)
                db.execute(f"UPDATE runs SET {sets} WHERE org = ? AND run_id = ?", (*changes.values(), org, run_id))
            r = db.execute("SELECT * FROM runs WHERE org = ? AND run_id = ?", (org, run_id)).fetchone()
            return self._run(r) if r else None

        return await self._tx(fn)

    async def log_data(self, org: str, run_id: str, params: dict[str, str], tags: dict[str, str],
                       delete_tags: list[str] = ()) -> None:  # type: ignore[assignment]
        """Add params (a new value for a logged one: ``ParamChanged``, nothing stored) and tags."""

        def fn(db: sqlite3.Connection) -> None:
            r = db.execute("SELECT params, tags FROM runs WHERE org = ? AND run_id = ?", (org, run_id)).fetchone()
            have_params, have_tags = json.loads(r[0]), json.loads(r[1])
            for k, v in params.items():
                if k in have_params and have_params[k] != v:
                    raise ParamChanged(
                        f"Changing param values is not allowed. Param with key={k!r} was already logged with "
                        f"value={have_params[k]!r} for run ID={run_id!r}. Attempted logging new value {v!r}."
                    )
            have_params.update(params)
            have_tags.update(tags)
            for k in delete_tags:
                have_tags.pop(k, None)
            run_name = have_tags.get("mlflow.runName")
            db.execute("UPDATE runs SET params = ?, tags = ?, run_name = coalesce(?, run_name)"
                       " WHERE org = ? AND run_id = ?",
                       (json.dumps(have_params), json.dumps(have_tags), run_name, org, run_id))

        await self._tx(fn)

    # -- metrics ---------------------------------------------------------------------------------
    async def reserve(self, org: str, run_id: str, digest: str, n: int) -> tuple[int, bool]:
        """The first seq of a request's ``n`` points, and whether it was reserved now
        (False: the same request was seen before and gets its seqs again)."""

        def fn(db: sqlite3.Connection) -> tuple[int, bool]:
            seen = db.execute("SELECT first_seq, n FROM requests WHERE org = ? AND run_id = ? AND digest = ?",
                              (org, run_id, digest)).fetchone()
            if seen is not None and seen[1] == n:
                return int(seen[0]), False
            (first,) = db.execute("SELECT next_seq FROM runs WHERE org = ? AND run_id = ?", (org, run_id)).fetchone()
            db.execute("UPDATE runs SET next_seq = ? WHERE org = ? AND run_id = ?", (first + n, org, run_id))
            db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?)", (org, run_id, digest, first, n))
            return int(first), True

        return await self._tx(fn)

    async def release(self, org: str, run_id: str, digest: str, first: int, n: int) -> None:
        """Give back a reservation whose write failed, if it is still the last one (no gap left)."""

        def fn(db: sqlite3.Connection) -> None:
            cur = db.execute("UPDATE runs SET next_seq = ? WHERE org = ? AND run_id = ? AND next_seq = ?",
                             (first, org, run_id, first + n))
            if cur.rowcount:
                db.execute("DELETE FROM requests WHERE org = ? AND run_id = ? AND digest = ?", (org, run_id, digest))

        await self._tx(fn)

    async def record_latest(self, org: str, run_id: str, latest: dict[str, tuple[float | None, int, int]]) -> None:
        """Keep each key's latest value as MLflow ranks them: highest step, then timestamp."""

        def fn(db: sqlite3.Connection) -> None:
            for key, (value, ts, step) in latest.items():
                db.execute(
                    "INSERT INTO latest_metrics VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org, run_id, key) DO UPDATE"
                    " SET value = excluded.value, timestamp = excluded.timestamp, step = excluded.step"
                    " WHERE (excluded.step, excluded.timestamp) >= (latest_metrics.step, latest_metrics.timestamp)",
                    (org, run_id, key, value, ts, step),
                )

        await self._tx(fn, durable=False)

    # -- artifacts -------------------------------------------------------------------------------
    async def put_artifact(self, org: str, run_id: str, path: str, sha: str, size: int) -> None:
        await self._tx(lambda db: db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                                             (org, run_id, path, sha, size)))

    async def artifacts(self, org: str, run_id: str) -> dict[str, tuple[str, int]]:
        def fn(db: sqlite3.Connection) -> dict[str, tuple[str, int]]:
            rows = db.execute("SELECT path, sha, size FROM artifacts WHERE org = ? AND run_id = ?", (org, run_id))
            return {p: (s, n) for p, s, n in rows}

        return await self._tx(fn)
