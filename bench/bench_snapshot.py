"""Code snapshots of a 10,000-file tree through a real ``arwx server``: the first and the second time.

The SDK's ``experiment(snapshot=...)`` lists the files (``git ls-files`` inside a
repository), takes each hash from the stat cache (size, mtime, inode, ctime) or
hashes the bytes, asks ``POST /v1/blobs/missing`` which the server lacks,
uploads those, and attaches the tree. The second snapshot of an unchanged
tree must upload nothing; this prints how long it takes, phase by phase, next
to the first (every file hashed and uploaded) and to a second one with the
stat cache deleted (every file hashed again, nothing uploaded).

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
                         timeout=120)
            ar.session(tag="bench")
            rows = []
            e = ar.experiment(note="first", diff="")
            t0 = time.perf_counter()
            first = ar._attach_snapshot(ar._get(), e["id"], ".")
            rows.append(("first (hash all, upload all)", time.perf_counter() - t0, first))
            seconds = []
            for _ in range(args.repeat):
                e = ar.experiment(note="again", diff="")
                t0 = time.perf_counter()
                again = ar._attach_snapshot(ar._get(), e["id"], ".")
                seconds.append((time.perf_counter() - t0, again))
            seconds.sort(key=lambda x: x[0])
            med = seconds[len(seconds) // 2]
            rows.append((f"second, unchanged (median of {args.repeat})", med[0], med[1]))
            os.unlink(ar._get().journal.hash_cache)
            e = ar.experiment(note="no cache", diff="")
            t0 = time.perf_counter()
            cold = ar._attach_snapshot(ar._get(), e["id"], ".")
            rows.append(("second, stat cache deleted", time.perf_counter() - t0, cold))
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
    print("| snapshot | files | uploaded | seconds |")
    print("|---|---:|---:|---:|")
    for name, s, out in rows:
        print(f"| {name} | {out['files']} | {out['uploaded']} | {s:.3f} |")
    print(f"\nunchanged tree, phases: list + stat→hash {t1 - t0:.3f} s, POST /v1/blobs/missing "
          f"({len(entries)} SHAs, {len(missing)} missing) {t2 - t1:.3f} s; the rest of the second snapshot "
          f"is recording the tree (journal line + PUT /v1/experiments/:id/tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
