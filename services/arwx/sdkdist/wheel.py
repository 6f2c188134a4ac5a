"""Builds the arwandb wheel from the SDK sources: the same sources give the same bytes.

Invariant: the wheel is a function of the file contents under ``sdk/arwandb``,
``sdk/pyproject.toml`` and ``sdk/README.md`` alone. No timestamps, file
modes, directory order, bytecode caches or zlib build reach it, so every
server and every replica serves one wheel under one ETag, and a hash pinned
by a user keeps matching until the SDK itself changes.

Why build at server start rather than at packaging time: the server runs
from a source checkout (``./scripts/server``, the tests, an editable
install) as often as from its installed wheel, and a build hook would leave
the checkout without a wheel to serve. Building here from the sources
shipped in the package (``arwx/_sdk``, see pyproject.toml) is one code path
for both; it is pure standard library and takes milliseconds, once per process.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The earliest date a zip entry can carry: any fixed date would do.
_EPOCH = (1980, 1, 1, 0, 0, 0)
# What of the package ships: Python sources and the typing marker. Not bytecode caches,
# not an editor's swap file left next to a source: the wheel is the sources, nothing else.
_SHIPPED = re.compile(r"^(?:.+\.py|py\.typed)$")
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*([a-z]+[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")


@dataclass(frozen=True)
class Wheel:
    """One built wheel, held in memory."""

    filename: str
    data: bytes
    sha256: str
    version: str
    requires_python: str


def sdk_source_dir() -> Path:
    """The SDK sources: their copy inside the installed arwx package, or ``sdk/`` of the checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_sdk"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "sdk"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _package_files(src: Path, package: str) -> list[tuple[str, bytes]]:
    root = src / package
    if not (root / "__init__.py").is_file():
        raise FileNotFoundError(f"no SDK package at {root}")
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(src)
        if path.is_file() and _SHIPPED.match(path.name) and "__pycache__" not in rel.parts:
            out.append((rel.as_posix(), path.read_bytes()))
    return sorted(out)


def _metadata(project: dict, readme: str | None) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if isinstance(project.get("license"), str):
        lines.append(f"License: {project['license']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    if readme is not None:
        lines.append("Description-Content-Type: text/markdown")
        return ("\n".join(lines) + "\n\n" + readme).encode()
    return ("\n".join(lines) + "\n").encode()


def _entry_points(project: dict) -> bytes | None:
    scripts = project.get("scripts") or {}
    if not scripts:
        return None
    body = "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items()))
    return f"[console_scripts]\n{body}".encode()


def build_wheel(src: Path) -> Wheel:
    """A py3-none-any wheel of the SDK at ``src`` (its ``pyproject.toml``, package and README)."""
    project = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    if not _NAME.match(name) or not _VERSION.match(version):
        raise ValueError(f"SDK name {name!r} or version {version!r} cannot name a wheel")
    dist = re.sub(r"[-_.]+", "_", name).lower()
    readme_file = project.get("readme")
    readme = (src / readme_file).read_text(encoding="utf-8") if isinstance(readme_file, str) else None
    info = f"{dist}-{version}.dist-info"
    files = _package_files(src, dist)
    files.append((f"{info}/METADATA", _metadata(project, readme)))
    wheel_file = "Wheel-Version: 1.0\nGenerator: arwx\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files.append((f"{info}/WHEEL", wheel_file.encode()))
    entry_points = _entry_points(project)
    if entry_points is not None:
        files.append((f"{info}/entry_points.txt", entry_points))
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files:
            entry = zipfile.ZipInfo(path, date_time=_EPOCH)
            entry.create_system = 3  # unix, so the mode below means what it says
            entry.external_attr = 0o100644 << 16
            # Stored, not deflated: deflate output depends on the zlib build, and the
            # bytes must not. The SDK is small (tens of KiB); zip adds no padding.
            entry.compress_type = zipfile.ZIP_STORED
            zf.writestr(entry, data)
    data = buf.getvalue()
    return Wheel(
        filename=f"{dist}-{version}-py3-none-any.whl",
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        version=version,
        requires_python=project.get("requires-python", ""),
    )


@cache
def served_wheel() -> Wheel:
    """The wheel this process serves: built once, on first use."""
    return build_wheel(sdk_source_dir())
