"""Code snapshots: which files, and their SHA-256, cheaply on the second look.

Invariants:

- The file list honours ``.gitignore`` inside a repository (``git ls-files -co
  --exclude-standard``: tracked files plus untracked ones git would not
  ignore); outside one it is a walk of the folder. Either way the
  ``DEFAULT_EXCLUDES`` (caches, virtualenvs, datasets, model weights, VCS
  folders), extra patterns from ``ARWANDB_SNAPSHOT_EXCLUDE``, the SDK's own
  spool folder, symlinks, and files over the size cap are left out.
- A file's hash is taken from the stat cache only when size, mtime (ns),
  inode and ctime (ns) all match what was seen when it was hashed; anything
  else hashes the bytes again. So an unchanged tree costs one ``stat`` per
  file, and a changed file is never reported with a stale hash.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import re
import stat
from dataclasses import dataclass

from arwandb import _git
from arwandb.spool import write_json_atomic

logger = logging.getLogger("arwandb")

#: Folder names never entered (any depth), and file-name patterns never taken.
EXCLUDED_DIRS = frozenset({
    # version control and caches
    ".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
    ".cache", ".tox", ".nox", ".eggs", "node_modules",
    # virtualenvs (any folder holding a pyvenv.cfg is one too)
    ".venv", "venv", "site-packages",
    # datasets, checkpoints and other trackers' output
    "data", "datasets", "checkpoints", "wandb", "mlruns", "lightning_logs",
})
EXCLUDED_FILES = (
    "*.pyc", "*.pyo", "*.egg-info",
    # model weights
    "*.pt", "*.pth", "*.ckpt", "*.safetensors", "*.bin", "*.h5", "*.hdf5", "*.onnx", "*.pb", "*.tflite",
    "*.gguf", "*.pkl", "*.pickle", "*.joblib", "*.npy", "*.npz",
    # datasets and archives
    "*.parquet", "*.arrow", "*.feather", "*.tfrecord", "*.tfrecords", "*.lmdb", "*.mdb", "*.db", "*.sqlite",
    "*.zip", "*.tar", "*.tar.gz", "*.tgz", "*.gz", "*.bz2", "*.xz", "*.zst", "*.7z",
)
DEFAULT_EXCLUDES = tuple(sorted(d + "/" for d in EXCLUDED_DIRS)) + EXCLUDED_FILES
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One file of a snapshot: its path in the tree, where it is on disk, its hash, size and mode."""

    path: str
    abspath: str
    sha256: str
    size: int
    mode: int


def _matcher(patterns: tuple[str, ...]):  # noqa: ANN202 - a bound ``re.Pattern.match`` or a no-op
    """One compiled regex for all the glob ``patterns``: a single match per name, not one per pattern."""
    if not patterns:
        return lambda _name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


class Lister:
    """Picks the files of a snapshot of one folder (see the module invariants)."""

    def __init__(self, max_file: int, extra: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
        self.max_file = max_file
        self.dir_excluded = _matcher(tuple(p.rstrip("/") for p in extra if p.endswith("/")))
        self.file_excluded = _matcher(EXCLUDED_FILES + tuple(p for p in extra if not p.endswith("/")))
        self.skip = tuple(os.path.abspath(s) for s in skip)
        self.too_big: list[str] = []

    def _dir_ok(self, name: str, abspath: str) -> bool:
        if name in EXCLUDED_DIRS or self.dir_excluded(name):
            return False
        if any(abspath == s or abspath.startswith(s + os.sep) for s in self.skip):
            return False
        return not os.path.isfile(os.path.join(abspath, "pyvenv.cfg"))

    def files(self, root: str) -> list[tuple[str, str]]:
        """(tree path, absolute path) of each file to take under the folder ``root``, sorted."""
        root = os.path.abspath(root)
        top = _git.toplevel(root)
        names = _git.listed(root) if top is not None else None
        if names is not None and top is not None:
            # git lists paths relative to the folder it runs in (root)
            prefix = root.rstrip(os.sep) + os.sep
            candidates = ((rel, prefix + rel) for rel in names)
        else:
            candidates = self._walk(root)
        out = []
        dir_ok: dict[str, bool] = {}
        for rel, path in candidates:
            parts = rel.split("/")
            if self.file_excluded(parts[-1]):
                continue
            ok = True
            for i in range(len(parts) - 1):  # each folder on the way must be allowed
                d = "/".join(parts[: i + 1])
                if d not in dir_ok:
                    dir_ok[d] = self._dir_ok(parts[i], os.path.join(root, d))
                if not dir_ok[d]:
                    ok = False
                    break
            if ok:
                out.append((rel, path))
        return sorted(out)

    def _walk(self, root: str):  # noqa: ANN202 - a generator of (rel, abspath)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if self._dir_ok(d, os.path.join(dirpath, d)))
            rel_dir = os.path.relpath(dirpath, root)
            for n in filenames:
                rel = n if rel_dir == "." else f"{rel_dir}/{n}".replace(os.sep, "/")
                yield rel, os.path.join(dirpath, n)


class HashCache:
    """SHA-256 of files by their stat signature, kept in one JSON file between runs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        self.dirty = False
        data = None
        with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            self.entries = data

    def hash(self, abspath: str, st: os.stat_result) -> str:
        sig = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        hit = self.entries.get(abspath)
        if hit is not None and hit[:4] == sig:
            return hit[4]
        h = hashlib.sha256()
        with open(abspath, "rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
        sha = h.hexdigest()
        self.entries[abspath] = [*sig, sha]
        self.dirty = True
        return sha

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                write_json_atomic(self.path, self.entries)
            self.dirty = False


def scan(paths: str | list[str], lister: Lister, cache: HashCache) -> list[Entry]:
    """The entries of a snapshot of ``paths``: a folder (its files, see ``Lister``) or a list of
    files and folders (tree paths relative to the current folder)."""
    if isinstance(paths, str):
        pairs = lister.files(paths)
    else:
        pairs = []
        for p in paths:
            if os.path.isdir(p):
                base = os.path.relpath(os.path.abspath(p)).replace(os.sep, "/")
                pairs += [(rel if base == "." else f"{base}/{rel}", ap) for rel, ap in lister.files(p)]
            else:
                pairs.append((os.path.normpath(os.path.relpath(os.path.abspath(p))).replace(os.sep, "/"),
                              os.path.abspath(p)))
    out: list[Entry] = []
    seen: set[str] = set()
    for rel, path in pairs:
        if rel in seen or rel.startswith("../"):
            continue
        seen.add(rel)
        try:
            st = os.lstat(path)
        except OSError:
            continue  # vanished between listing and now
        if not stat.S_ISREG(st.st_mode):
            continue  # symlinks, sockets, folders git lists as submodules
        if st.st_size > lister.max_file:
            lister.too_big.append(rel)
            continue
        try:
            sha = cache.hash(path, st)
        except OSError:
            continue
        mode = 0o100755 if st.st_mode & 0o111 else 0o100644
        out.append(Entry(rel, path, sha, st.st_size, mode))
    cache.save()
    return out
