"""Artifacts: named, versioned, content-addressed outputs with movable refs and lineage.

Invariants:

- An artifact is (org, project, name). A version is the SHA-256 of its
  canonical manifest (entries sorted by path, each ``[path, sha256, size]``,
  encoded as compact JSON): the same content is the same version, and logging
  it again changes nothing.
- Version numbers are 1, 2, 3, … per artifact with no gaps and no duplicates,
  also when clients log at once: a new number is max + 1, read and written in
  one transaction that holds the artifact's row (``SELECT … FOR UPDATE`` on
  PostgreSQL; SQLite's write transactions are serial). The primary key and
  the unique digest are the backstop: a transaction that loses a race to
  either is retried from the start, so it finds the winner's row.
- ``produced_by`` names an experiment of the same org.
- A manifest names only bytes its org can read (blobs it uploaded, sizes
  checked) or files it registered; anything else is refused, naming them.
- A ref points at one version and moves only under the same row lock; with
  an expected version the move is a compare-and-set. Every move is appended
  to ``artifact_ref_log`` with the key that made it, in the same
  transaction as the move. ``latest`` is built in (the highest version) and
  cannot be moved; ``vN`` names version N. A move to where the ref already
  is changes nothing and succeeds (a re-sent move is harmless), whatever it
  expected.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import EllipsisType

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.catalog.tables import artifact_ref_log, artifact_refs, artifact_versions, artifacts, experiments
from arwx.control.files import Files
from arwx.errors import BadRequest, Conflict, NotFound

LATEST = "latest"
_VERSION_RE = re.compile(r"^v([1-9][0-9]{0,8})$")
# Names a client cannot give a ref: the built-in one, and what would read as a version.
RESERVED_REFS = frozenset({LATEST})
# A transaction that lost a race to a unique key starts over; a handful is plenty
# (each retry first waits for the winner's row lock).
MAX_ATTEMPTS = 8
SIZE_CHECKS = 32  # concurrent blob size look-ups for one manifest
MAX_REF_LOG = 1000


class Unresolvable(NotFound):
    """No such artifact, version or ref in the caller's org (another org's looks the same)."""


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    sha256: str
    size: int


def canonical(entries: list[Entry]) -> tuple[list[Entry], str]:
    """The entries sorted by path, and the version digest: SHA-256 of their compact JSON."""
    ordered = sorted(entries, key=lambda e: e.path)
    body = msgspec.json.encode([[e.path, e.sha256, e.size] for e in ordered])
    return ordered, hashlib.sha256(body).hexdigest()


def version_name(n: int) -> str:
    return f"v{n}"


def parse_version(v: str | int, field: str) -> int:
    """``v3`` or ``3`` as 3; ``BadRequest`` naming ``field`` otherwise."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    if isinstance(v, str) and (m := _VERSION_RE.match(v)):
        return int(m.group(1))
    raise BadRequest(f"{field}: {v!r} is not a version (v1, v2, …)")


def check_ref_name(ref: str) -> str:
    if ref in RESERVED_REFS:
        raise BadRequest(f"ref: {ref!r} is built in (always the highest version) and cannot be moved")
    if _VERSION_RE.match(ref):
        raise BadRequest(f"ref: {ref!r} reads as a version number; choose another name")
    return ref


def _now_ms() -> int:
    return int(time.time() * 1000)


def _version_public(row, with_manifest: bool) -> dict:  # noqa: ANN001 - a Row
    out = {
        "version": version_name(row.version),
        "digest": row.digest,
        "size": row.size,
        "file_count": row.file_count,
        "produced_by": row.produced_by,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }
    if with_manifest:
        out["manifest"] = row.manifest
    return out


class Artifacts:
    """Artifact versions, refs and lineage of every org, in the catalog."""

    def __init__(self, catalog: Catalog, blobs: BlobStore, files: Files) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.files = files

    # -- logging a version ------------------------------------------------------------------

    async def log(self, org: str, key_id: str, project: str, name: str, type_: str,
                  manifest: Mapping[str, tuple[str, int]] | None, file_id: str | None,
                  produced_by: str | None) -> tuple[dict, bool]:
        """Log a version; (the version, whether it is new). Identical content returns the existing one."""
        if (manifest is None) == (file_id is None):
            raise BadRequest("give exactly one of manifest (path → {sha256, size}) and file (a file id)")
        if file_id is not None:
            f = await self.files.get(org, file_id)
            entries = [Entry(f.name, f.sha256, f.size)]
        else:
            if not manifest:
                raise BadRequest("manifest: a version has at least one file")
            entries = [Entry(p, s, n) for p, (s, n) in manifest.items()]
        await self._check_readable(org, entries)
        if produced_by is not None:
            await self._check_experiment(org, produced_by)
        ordered, digest = canonical(entries)
        stored = [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in ordered]
        size = sum(e.size for e in ordered)
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await self._log_once(org, key_id, project, name, type_, digest, stored, size, produced_by)
            except IntegrityError:
                # Another client created the artifact or the same version first; start over and find it.
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _check_readable(self, org: str, entries: list[Entry]) -> None:
        """Every entry names a blob of ``org`` of that size, or a file ``org`` registered."""
        shas = list(dict.fromkeys(e.sha256 for e in entries))
        absent = set(await self.blobs.missing(org, shas))
        gate = asyncio.Semaphore(SIZE_CHECKS)

        async def size_of(sha: str) -> int | None:
            async with gate:
                return await self.blobs.size(org, sha)

        present = [s for s in shas if s not in absent]
        sizes = dict(zip(present, await asyncio.gather(*(size_of(s) for s in present))))
        registered = await self.files.registered(org, [(e.sha256, e.size) for e in entries if e.sha256 in absent])
        unknown, wrong = [], []
        for e in entries:
            if e.sha256 in absent:
                if (e.sha256, e.size) not in registered:
                    unknown.append(e)
            elif sizes.get(e.sha256) != e.size:
                wrong.append(f"{e.path} (blob {e.sha256} has {sizes.get(e.sha256)} bytes, not {e.size})")
        if unknown:
            shas_out = sorted({e.sha256 for e in unknown})
            raise BadRequest(
                "manifest names blobs this organization never uploaded (POST /v1/blobs) nor registered "
                f"(POST /v1/files): {', '.join(f'{e.path} → {e.sha256}' for e in unknown[:20])}"
                + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""),
                extra={"missing": shas_out},
            )
        if wrong:
            raise BadRequest(f"manifest: wrong size for {'; '.join(wrong[:20])}")

    async def _check_experiment(self, org: str, experiment_id: str) -> None:
        """Lineage names an experiment of ``org`` (another org's looks like none)."""
        e = experiments.c
        async with self.catalog.connect() as conn:
            found = await conn.scalar(select(e.id).where(e.org == org, e.id == experiment_id))
        if found is None:
            raise BadRequest(f"produced_by: unknown experiment {experiment_id!r}")

    async def _log_once(self, org: str, key_id: str, project: str, name: str, type_: str, digest: str,
                        stored: list[dict], size: int, produced_by: str | None) -> tuple[dict, bool]:
        now = _now_ms()
        key = (artifacts.c.org == org, artifacts.c.project == project, artifacts.c.name == name)
        async with self.catalog.begin() as conn:
            row = (await conn.execute(select(artifacts.c.type).where(*key).with_for_update())).first()
            if row is None:
                await conn.execute(artifacts.insert().values(
                    org=org, project=project, name=name, type=type_, created_at=now, updated_at=now,
                ))
            elif row.type != type_:
                raise Conflict(f"type: artifact {name!r} in project {project!r} is a {row.type!r}, not {type_!r}")
            v = artifact_versions.c
            vkey = (v.org == org, v.project == project, v.name == name)
            same = (await conn.execute(select(artifact_versions).where(*vkey, v.digest == digest))).first()
            if same is not None:
                return self._logged(project, name, type_, same), False
            number = (await conn.scalar(select(func.coalesce(func.max(v.version), 0)).where(*vkey))) + 1
            values = dict(
                org=org, project=project, name=name, version=number, digest=digest, manifest=stored, size=size,
                file_count=len(stored), produced_by=produced_by, created_at=now, created_by=key_id,
            )
            await conn.execute(artifact_versions.insert().values(**values))
            await conn.execute(artifacts.update().where(*key).values(updated_at=now))
        return self._logged(project, name, type_, _Row(values)), True

    @staticmethod
    def _logged(project: str, name: str, type_: str, row) -> dict:  # noqa: ANN001 - a Row
        return {"project": project, "name": name, "type": type_, **_version_public(row, with_manifest=False)}

    # -- reading ----------------------------------------------------------------------------

    async def list(self, org: str, type_: str | None, project: str | None) -> list[dict]:
        """The org's artifacts (optionally of one type / project), newest change first, with their latest version."""
        a, v = artifacts.c, artifact_versions.c
        latest = (
            select(v.org, v.project, v.name, func.max(v.version).label("latest"), func.count().label("versions"))
            .where(v.org == org).group_by(v.org, v.project, v.name).subquery()
        )
        q = (
            select(artifacts, latest.c.latest, latest.c.versions)
            .join(latest, (latest.c.project == a.project) & (latest.c.name == a.name))
            .where(a.org == org)
        )
        if type_ is not None:
            q = q.where(a.type == type_)
        if project is not None:
            q = q.where(a.project == project)
        q = q.order_by(a.updated_at.desc(), a.project, a.name).limit(10_000)
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            {"project": r.project, "name": r.name, "type": r.type, "latest": version_name(r.latest),
             "versions": r.versions, "created_at": r.created_at, "updated_at": r.updated_at}
            for r in rows
        ]

    async def produced_by(self, org: str, experiment_id: str) -> list[dict]:
        """The versions an experiment produced (its side of lineage)."""
        v = artifact_versions.c
        q = (select(v.project, v.name, v.version, v.digest).where(v.org == org, v.produced_by == experiment_id)
             .order_by(v.created_at, v.project, v.name, v.version))
        async with self.catalog.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"project": r.project, "name": r.name, "version": version_name(r.version), "digest": r.digest}
                for r in rows]

    async def winner(self, org: str, project: str, ref: str = "winner") -> dict | None:
        """The project's artifact version that ``ref`` (``winner``) points at; of several artifacts
        with that ref, the one whose ref moved last (by the ref log's order, not the clock). None if
        no artifact of the project has it."""
        r, v, lg = artifact_refs.c, artifact_versions.c, artifact_ref_log.c
        async with self.catalog.connect() as conn:
            name = await conn.scalar(
                select(lg.name).where(lg.org == org, lg.project == project, lg.ref == ref)
                .order_by(lg.id.desc()).limit(1))
            if name is None:
                return None
            row = (await conn.execute(
                select(r.version, r.updated_at, v.digest, v.produced_by)
                .join(artifact_versions, (v.org == r.org) & (v.project == r.project) & (v.name == r.name)
                      & (v.version == r.version))
                .where(r.org == org, r.project == project, r.name == name, r.ref == ref))).one()
        return {"name": name, "ref": ref, "version": version_name(row.version), "digest": row.digest,
                "produced_by": row.produced_by, "moved_at": row.updated_at}

    async def project_of(self, org: str, name: str, project: str | None) -> str:
        """The project of artifact ``name``: ``project`` if given (and it has one), else the only one that has."""
        a = artifacts.c
        q = select(a.project).where(a.org == org, a.name == name)
        if project is not None:
            q = q.where(a.project == project)
        async with self.catalog.connect() as conn:
            projects = [r.project for r in (await conn.execute(q.order_by(a.project).limit(11)))]
        if not projects:
            where = f" in project {project!r}" if project is not None else ""
            raise Unresolvable(f"unknown artifact {name!r}{where}")
        if len(projects) > 1:
            raise BadRequest(f"project: artifact {name!r} exists in several projects "
                             f"({', '.join(map(repr, projects[:10]))}); name one with ?project=")
        return projects[0]

    async def detail(self, org: str, name: str, project: str | None) -> dict:
        """One artifact: its versions (newest first), refs (``latest`` included), lineage and the ref log."""
        project = await self.project_of(org, name, project)
        a, v, r, lg = artifacts.c, artifact_versions.c, artifact_refs.c, artifact_ref_log.c
        async with self.catalog.connect() as conn:
            art = (await conn.execute(select(artifacts).where(a.org == org, a.project == project, a.name == name))).one()
            versions = (await conn.execute(
                select(artifact_versions).where(v.org == org, v.project == project, v.name == name)
                .order_by(v.version.desc()))).all()
            refs = (await conn.execute(
                select(artifact_refs).where(r.org == org, r.project == project, r.name == name).order_by(r.ref))).all()
            moves = (await conn.execute(
                select(artifact_ref_log).where(lg.org == org, lg.project == project, lg.name == name)
                .order_by(lg.id.desc()).limit(MAX_REF_LOG))).all()
        ref_map = {x.ref: version_name(x.version) for x in refs}
        if versions:
            ref_map[LATEST] = version_name(versions[0].version)
        return {
            "project": project, "name": name, "type": art.type, "created_at": art.created_at,
            "updated_at": art.updated_at,
            "versions": [
                {**_version_public(x, with_manifest=False),
                 "refs": sorted(k for k, val in ref_map.items() if val == version_name(x.version))}
                for x in versions
            ],
            "refs": ref_map,
            "lineage": [{"version": version_name(x.version), "produced_by": x.produced_by}
                        for x in versions if x.produced_by is not None],
            "ref_log": [
                {"ref": m.ref, "from": None if m.from_version is None else version_name(m.from_version),
                 "to": version_name(m.to_version), "reason": m.reason, "moved_at": m.moved_at, "moved_by": m.moved_by}
                for m in moves
            ],
        }

    async def resolve(self, org: str, name: str, ref: str, project: str | None) -> dict:
        """``name:ref`` → the version, with its manifest. ``ref`` is ``latest``, ``vN`` or a ref's name."""
        project = await self.project_of(org, name, project)
        v, r = artifact_versions.c, artifact_refs.c
        vkey = (v.org == org, v.project == project, v.name == name)
        async with self.catalog.connect() as conn:
            art_type = await conn.scalar(select(artifacts.c.type).where(
                artifacts.c.org == org, artifacts.c.project == project, artifacts.c.name == name))
            if ref == LATEST:
                number = await conn.scalar(select(func.max(v.version)).where(*vkey))
            elif m := _VERSION_RE.match(ref):
                number = int(m.group(1))
            else:
                number = await conn.scalar(select(r.version).where(
                    r.org == org, r.project == project, r.name == name, r.ref == ref))
            row = None
            if number is not None:
                row = (await conn.execute(select(artifact_versions).where(*vkey, v.version == number))).first()
        if row is None:
            raise Unresolvable(f"artifact {name!r} in project {project!r} has no {ref!r}")
        return {"project": project, "name": name, "type": art_type, "ref": ref, **_version_public(row, True)}

    # -- moving refs ------------------------------------------------------------------------

    async def move_ref(self, org: str, key_id: str, name: str, ref: str, project: str | None,
                       version: int, expected: int | None | EllipsisType = ..., reason: str | None = None) -> dict:
        """Point ``ref`` at ``version``. With ``expected`` (a number, or None for "no such ref yet";
        ``...``: move unconditionally)
        the move happens only if the ref is there now; otherwise ``Conflict`` (409) naming where it is."""
        check_ref_name(ref)
        project = await self.project_of(org, name, project)
        a, v, r = artifacts.c, artifact_versions.c, artifact_refs.c
        now = _now_ms()
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self.catalog.begin() as conn:
                    # The artifact's row lock orders every move of its refs (and version numbering).
                    await conn.execute(select(a.name).where(a.org == org, a.project == project, a.name == name)
                                       .with_for_update())
                    exists = await conn.scalar(select(v.version).where(
                        v.org == org, v.project == project, v.name == name, v.version == version))
                    if exists is None:
                        raise BadRequest(f"version: artifact {name!r} in project {project!r} has no "
                                         f"{version_name(version)}")
                    rkey = (r.org == org, r.project == project, r.name == name, r.ref == ref)
                    current = await conn.scalar(select(r.version).where(*rkey))
                    if current == version:
                        # Already there: a re-sent move (also a compare-and-set that succeeded) is harmless.
                        return {"project": project, "name": name, "ref": ref, "version": version_name(version),
                                "previous": version_name(current), "moved": False}
                    if expected is not ... and expected != current:
                        want = "absent" if expected is None else version_name(expected)
                        now_at = "absent" if current is None else version_name(current)
                        raise Conflict(
                            f"expected_version: ref {ref!r} is {now_at}, not {want}; nothing moved",
                            extra={"current_version": None if current is None else version_name(current)},
                        )
                    if current is None:
                        await conn.execute(artifact_refs.insert().values(
                            org=org, project=project, name=name, ref=ref, version=version, updated_at=now,
                            updated_by=key_id))
                    else:
                        await conn.execute(artifact_refs.update().where(*rkey).values(
                            version=version, updated_at=now, updated_by=key_id))
                    await conn.execute(artifact_ref_log.insert().values(
                        org=org, project=project, name=name, ref=ref, from_version=current, to_version=version,
                        reason=reason, moved_at=now, moved_by=key_id))
                break
            except IntegrityError:
                # Two first moves of a new ref raced on its insert; the loser re-reads it.
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        return {"project": project, "name": name, "ref": ref, "version": version_name(version),
                "previous": None if current is None else version_name(current), "moved": True}


class _Row:
    """Attribute access to the values just inserted (shaped like a Row for ``_version_public``)."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)
