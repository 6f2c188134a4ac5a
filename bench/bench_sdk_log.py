"""µs per arwandb log() of 4 metrics (offline mode, background threads running); wandb if installed.

Run: PYTHONPATH=sdk python bench/bench_sdk_log.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk"))


def measure(log, calls: int) -> list[float]:
    """Per-call wall time in µs (each call timed on its own, perf_counter_ns overhead included)."""
    pc = time.perf_counter_ns
    out = [0.0] * calls
    for i in range(calls):
        m = {"loss": 1.0 / (i + 1), "lr": 3e-4, "acc": 0.5, "grad_norm": 1.25}
        t0 = pc()
        log(m)
        out[i] = (pc() - t0) / 1000.0
    return out


def row(name: str, us: list[float]) -> str:
    us = sorted(us)
    p = lambda q: us[min(len(us) - 1, int(q * len(us)))]  # noqa: E731
    return (
        f"| {name:<22} | {len(us):>8} | {statistics.median(us):>8.2f} | {p(0.99):>8.2f} | {p(0.999):>8.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    import arwandb

    lines = [
        "| SDK                    |    calls | median µs |  p99 µs | p99.9 µs |",
        "|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as d:
        run = arwandb.init(project="bench", mode="offline", dir=d, system_metrics=True)
        measure(run.log, 5_000)  # warm-up
        us = measure(run.log, args.calls)
        t0 = time.perf_counter()
        run.finish()
        fin = time.perf_counter() - t0
        lines.append(row("arwandb (offline)", us))
    try:
        import wandb  # type: ignore[import-not-found]
    except ImportError:
        wandb = None
    if wandb is None:
        note = "wandb not installed"
    else:
        with tempfile.TemporaryDirectory() as d:
            wr = wandb.init(project="bench", mode="offline", dir=d)
            wus = measure(wr.log, min(args.calls, 50_000))
            wr.finish()
            lines.append(row("wandb (offline)", wus))
            note = f"wandb {wandb.__version__}"
    print("\n".join(lines))
    print(f"\narwandb finish() (spool drain of {args.calls * 4} points): {fin:.2f} s; {note}")


if __name__ == "__main__":
    main()
