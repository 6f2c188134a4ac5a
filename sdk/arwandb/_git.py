"""What code ran: the git commit, its parent, and the uncommitted working-tree diff.

Invariant: capturing never raises and never waits long. Outside a repository,
without ``git`` on the PATH, or when a git command fails or takes longer than
``GIT_TIMEOUT``, the answer is "nothing captured" (``None``), not an error.

The diff is what ``git diff --binary HEAD`` shows (staged and unstaged
changes of tracked files) plus a "new file" patch for every untracked file
git would not ignore (marked intent-to-add in a throwaway copy of the index,
so git writes those patches itself, binary ones included), so ``git apply``
on the commit gives the tree that ran. Paths under ``exclude`` (the SDK's own spool
folder) are left out. Over ``max_bytes`` the diff becomes a one-line marker.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

logger = logging.getLogger("arwandb")

GIT_TIMEOUT = 10.0
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: the base of a repo with no commit


@dataclass
class GitState:
    """The repository's top folder, HEAD's commit and parent (None without one), the diff text."""

    top: str
    commit: str | None
    parent: str | None
    diff: str


def _git(cwd: str, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes | None:
    """stdout of ``git args`` in ``cwd``, or None if it failed, timed out or git is missing."""
    try:
        p = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=stdin if stdin is not None else b"",
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def toplevel(cwd: str) -> str | None:
    """The top folder of the work tree holding ``cwd``, or None outside git."""
    out = _git(cwd, "rev-parse", "--show-toplevel")
    return os.fsdecode(out.strip()) if out else None


def branch(cwd: str) -> str | None:
    """The checked-out branch's name (None outside git or on a detached HEAD)."""
    out = _git(cwd, "symbolic-ref", "-q", "--short", "HEAD")
    return out.decode("utf-8", "replace").strip() or None if out else None


def untracked(top: str) -> list[str] | None:
    """Untracked files git would not ignore (paths relative to ``top``), or None on failure."""
    out = _git(top, "ls-files", "-z", "--others", "--exclude-standard")
    return None if out is None else [os.fsdecode(p) for p in out.split(b"\0") if p]


def listed(top: str) -> list[str] | None:
    """Tracked plus untracked-but-not-ignored files (``git ls-files -co --exclude-standard``)."""
    out = _git(top, "ls-files", "-z", "-co", "--exclude-standard")
    return None if out is None else sorted({os.fsdecode(p) for p in out.split(b"\0") if p})


def diff_marker(size: int, cap: int) -> str:
    return f"# arwandb: the working-tree diff ({size} bytes) is over ARWANDB_MAX_DIFF_BYTES={cap}; not captured\n"


def capture(cwd: str, max_bytes: int, exclude: tuple[str, ...] = ()) -> GitState | None:
    """The state of the repository holding ``cwd``, or None outside git (or if git fails).

    ``exclude``: absolute folder paths whose files stay out of the diff.
    """
    top = toplevel(cwd)
    if top is None:
        return None
    head = _git(top, "rev-parse", "--verify", "-q", "HEAD")
    commit = head.decode().strip() if head else None
    parent = None
    if commit:
        p = _git(top, "rev-parse", "--verify", "-q", "HEAD^")
        parent = p.decode().strip() if p else None
    rel_ex = [os.path.relpath(e, top) + os.sep for e in exclude if _inside(e, top)]
    new: list[str] = []
    size = 0
    for rel in untracked(top) or []:
        if any(rel.startswith(e) for e in rel_ex):
            continue
        try:
            size += os.path.getsize(os.path.join(top, rel))
        except OSError:
            continue
        new.append(rel)
    if size > max_bytes:  # the diff will be a marker: never read them (an untracked model.pt)
        tracked = _git(top, "diff", "--no-color", "--no-ext-diff", "--stat=1", commit or EMPTY_TREE)
        return GitState(top, commit, parent, diff_marker(size + len(tracked or b""), max_bytes))
    diff = _diff_with_new_files(top, commit or EMPTY_TREE, new)
    if diff is None:
        return GitState(top, commit, parent, "")
    if len(diff) > max_bytes:
        return GitState(top, commit, parent, diff_marker(len(diff), max_bytes))
    return GitState(top, commit, parent, diff.decode("utf-8", "replace"))


def _diff_with_new_files(top: str, base: str, new: list[str]) -> bytes | None:
    """``git diff --binary base`` with ``new`` files marked intent-to-add in a throwaway copy of
    the index: git itself writes their patches (binary ones too), and neither the real index nor
    the object store is touched."""
    index = _git(top, "rev-parse", "--git-path", "index")
    if index is None:
        return None
    src = os.path.join(top, os.fsdecode(index.strip()))
    with tempfile.TemporaryDirectory(prefix="arwandb-git-") as tmp:
        tmp_index = os.path.join(tmp, "index")
        try:
            shutil.copyfile(src, tmp_index)
        except FileNotFoundError:
            pass  # no index yet (nothing staged): git starts an empty one
        except OSError:
            return None
        env = {"GIT_INDEX_FILE": tmp_index}
        if new:
            paths = b"\0".join(os.fsencode(p) for p in new)
            if _git(top, "add", "-N", "--pathspec-from-file=-", "--pathspec-file-nul", env=env, stdin=paths) is None:
                return None
        return _git(top, "diff", "--binary", "--no-color", "--no-ext-diff", base, env=env)


def _inside(path: str, top: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), top]) == top
    except ValueError:
        return False
