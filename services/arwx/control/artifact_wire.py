"""Request bodies of the file and artifact routes, as msgspec structs.

Every body refuses unknown fields, so a typo is a 400 naming the field, never
a silently ignored value. ``scripts/gen_schemas.py`` renders them into
``schemas/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from arwx.wire import ProjectName

#: Artifact names and refs are URL path segments: a safe alphabet, no slash.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ArtifactName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
RefName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
ArtifactType = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, msgspec.Meta(ge=0, le=1 << 53)]
#: ``v3`` or 3: a version of one artifact.
VersionName = Annotated[str, msgspec.Meta(pattern=r"^v[1-9][0-9]{0,8}$")] | Annotated[int, msgspec.Meta(ge=1, le=10**9)]
#: A manifest path: relative, no empty or dot segments, no control characters.
PATH_PATTERN = r"^(?!/)(?!.*//)(?!.*/$)(?!(.*/)?\.\.?(/|$))[^\x00-\x1f\x7f\\\ud800-\udfff]{1,1024}$"
FilePath = Annotated[str, msgspec.Meta(pattern=PATH_PATTERN)]
FileId = Annotated[str, msgspec.Meta(pattern=r"^file_[0-9a-f]{32}$")]
Uri = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\x00-\x20\x7f\ud800-\udfff]+$")]
Label = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f\x7f/\\\ud800-\udfff]*$")]
Reason = Annotated[str, msgspec.Meta(max_length=1024, pattern=r"^[^\x00\ud800-\udfff]*$")]
ExperimentId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_MANIFEST = 10_000


class FileRegister(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/files``: an external file arwx does not hold, by where it lives and its content hash."""

    uri: Uri
    sha256: Sha256
    size: Size
    name: Label | UnsetType = UNSET  # default: the last segment of ``uri``


class ManifestEntry(msgspec.Struct, forbid_unknown_fields=True):
    """One file of a version: the blob (or registered file) with this SHA-256 and size."""

    sha256: Sha256
    size: Size


class ArtifactLog(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/artifacts/log``: a version from a manifest (path → blob) or from one file."""

    project: ProjectName
    name: ArtifactName
    type: ArtifactType = "model"
    manifest: Annotated[dict[FilePath, ManifestEntry], msgspec.Meta(max_length=MAX_MANIFEST)] | UnsetType = UNSET
    file: FileId | UnsetType = UNSET  # a file from POST /v1/files or /v1/files/upload, instead of a manifest
    produced_by: ExperimentId | None = None  # the experiment that made this version (lineage)


class RefMove(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PUT /v1/artifacts/:name/refs/:ref``: point the ref at ``version``.

    ``expected_version`` makes the move a compare-and-set: it happens only if
    the ref points there now (``null``: only if the ref does not exist yet).
    """

    version: VersionName
    expected_version: VersionName | None | UnsetType = UNSET
    project: ProjectName | UnsetType = UNSET  # or ?project=
    reason: Reason | None = None
