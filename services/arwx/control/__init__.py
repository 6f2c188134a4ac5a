"""The control plane: what people and agents create over the catalog and the blob store.

Services are plain async classes that know nothing of HTTP: ``projects``
(projects and goals), ``research`` (sessions, experiments, decisions, code
snapshots), ``summary`` (agent context, dashboard bootstrap), ``idempotency``
(``Idempotency-Key``), ``files`` and ``artifacts``. Route modules (``routes``,
``artifact_routes``) translate requests to calls of them and back. ``Control``
is the set of research services one process builds once.
"""
from __future__ import annotations

from dataclasses import dataclass

from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.control.artifacts import Artifacts
from arwx.control.files import Files
from arwx.control.idempotency import IdempotencyKeys
from arwx.control.projects import Projects
from arwx.control.research import Research
from arwx.control.summary import Summaries


@dataclass(frozen=True)
class Control:
    """The control-plane services of one process."""

    projects: Projects
    research: Research
    summaries: Summaries
    idempotency: IdempotencyKeys

    @classmethod
    def open(cls, catalog: Catalog, blobs: BlobStore) -> Control:
        # Artifacts hold no state of their own: this instance reads winners and lineage.
        artifacts = Artifacts(catalog, blobs, Files(catalog, blobs))
        projects = Projects(catalog, artifacts)
        research = Research(catalog, blobs, artifacts)
        return cls(projects, research, Summaries(catalog, projects, research), IdempotencyKeys(catalog))
