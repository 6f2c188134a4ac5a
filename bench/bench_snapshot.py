"""Code snapshots of a 10,000-file tree through a real ``arwx server``: the first and the second time.

The SDK's ``experiment(snapshot=...)`` lists the files (``git ls-files`` inside a
repository), takes each hash from the stat cache (size, mtime, inode, ctime) or
hashes the bytes, asks ``POST /v1/blobs/missing`` which the server lacks,
uploads those, and attaches the tree. The second snapshot of an unchanged
tree must upload nothing; this prints how long it takes, phase by phase, next
to the first (every file hashed and uploaded) and to a second one with the
stat cache deleted (every file hashed again, nothing uploaded). Next to wall
time it prints the CPU seconds of the client (with its git child) and of the
server process: on a shared, loaded machine the wall time is mostly waiting
for a core, and client + server CPU is what an idle machine would need.

    python bench/bench_snapshot.py                  # 10,000 files of 1 KiB, in a git repository
    python bench/bench_snapshot.py --files 10000 --size 4096 --no-git
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "sdk"))

from tests.helpers import ServerProcess  # noqa: E402


def make_tree(root: Path, files: int, size: int, git: bool) -> None:
    for i in range(files):
        d = root / f"pkg{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        body = (f"# file {i}\n".encode() + os.urandom(size // 2).hex().encode())[:size]
        (d / f"mod{i % 100:03d}.py").write_bytes(body)
    if git:
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@x"}
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tree"]):
            subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far: of process ``pid`` (all its threads), or of this
    process and its waited-for children (git) when ``pid`` is None."""
    if pid is None:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(ar, eid: str, server_pid: int) -> tuple[float, float, float, dict]:  # noqa: ANN001 - the module
    """(wall s, client CPU s incl. git, server CPU s, what the snapshot did)."""
    c0, s0, t0 = cpu_s(), cpu_s(server_pid), time.perf_counter()
    out = ar._attach_snapshot(ar._get(), eid, ".")
    return time.perf_counter() - t0, cpu_s() - c0, cpu_s(server_pid) - s0, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=1024, help="bytes per file")
    ap.add_argument("--no-git", action="store_true", help="a plain folder (walked) instead of a repository")
    ap.add_argument("--repeat", type=int, default=5, help="second snapshots to time (the median is printed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arwx-bench-snap-") as tmp:
        tree = Path(tmp) / "tree"
        make_tree(tree, args.files, args.size, not args.no_git)
        srv = ServerProcess(Path(tmp) / "data").start()
        try:
            os.chdir(tree)
            from arwandb import autoresearch as ar

            ar.configure(base_url=srv.url, api_key=srv.key, dir=str(Path(tmp) / "spool"), project="bench",
                         timeout=600)  # let the first snapshot finish in its own call
            ar.session(tag="bench")
            rows = []
            pid = srv.proc.pid  # type: ignore[union-attr]
            e = ar.experiment(note="first", diff="")
            rows.append(("first (hash all, upload all)", *timed(ar, e["id"], pid)))
            again = []
            for _ in range(args.repeat):
                e = ar.experiment(note="again", diff="")
                again.append(timed(ar, e["id"], pid))
            again.sort(key=lambda x: x[0])
            rows.append((f"second, unchanged (median of {args.repeat})", *again[len(again) // 2]))
            os.unlink(ar._get().journal.hash_cache)
            e = ar.experiment(note="no cache", diff="")
            rows.append(("second, stat cache deleted", *timed(ar, e["id"], pid)))
            # where the time of an unchanged snapshot goes
            from arwandb import _snapshot

            c = ar._get()
            t0 = time.perf_counter()
            lister = _snapshot.Lister(5 << 20, skip=(c.s.root,))
            entries = _snapshot.scan(".", lister, _snapshot.HashCache(c.journal.hash_cache))
            t1 = time.perf_counter()
            missing = c.replayer.missing(sorted({x.sha256 for x in entries}), time.monotonic() + 60)
            t2 = time.perf_counter()
        finally:
            srv.terminate()
            os.chdir(ROOT)
            shutil.rmtree(tmp, ignore_errors=True)
    kind = "plain folder (walked)" if args.no_git else "git repository (git ls-files)"
    print(f"<!-- {platform.node()} {platform.python_version()} {time.strftime('%Y-%m-%d %H:%M')} "
          f"load {os.getloadavg()[0]:.2f} -->")
    print(f"{args.files} files of {args.size} bytes, {kind}\n")
    print("| snapshot | files | uploaded | wall s | client CPU s (incl. git) | server CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, wall, ccpu, scpu, out in rows:
        print(f"| {name} | {out['files']} | {out['uploaded']} | {wall:.3f} | {ccpu:.3f} | {scpu:.3f} |")
    print(f"\nunchanged tree, phases: list + stat→hash {t1 - t0:.3f} s, POST /v1/blobs/missing "
          f"({len(entries)} SHAs, {len(missing)} missing) {t2 - t1:.3f} s; the rest of the second snapshot "
          f"is recording the tree (journal line + PUT /v1/experiments/:id/tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
