"""Training-loop slowdown with the arwandb SDK on vs off.

Two "training steps": a numpy one (a 128×128 matmul + tanh, a few hundred µs)
and a pure-Python one (a few µs of arithmetic). Each loop logs 4 metrics per
step. SDK off / SDK on (offline: spool on disk, its background threads
running) are interleaved in --rounds rounds; medians of the per-round wall
time are compared. With --online the SDK uploads to a local ``arwx server``
(which then competes for the same CPU cores).

    python bench/bench_train_overhead.py [--steps 20000] [--rounds 5] [--online]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services"))
sys.path.insert(0, str(ROOT / "sdk"))


def numpy_step(state: dict) -> float:
    w = state["w"]
    x = np.tanh(state["x"] @ w)
    state["w"] = w - 1e-4 * (x.T @ state["x"]) / len(x)
    return float(x.mean())


def python_step(state: dict) -> float:
    acc = 0.0
    for i in range(40):
        acc += (i * 0.5) ** 0.5
    state["acc"] = acc
    return acc


def loop(step, steps: int, log) -> float:  # noqa: ANN001
    rng = np.random.default_rng(0)
    state = {"w": rng.normal(size=(128, 128)) * 0.01, "x": rng.normal(size=(64, 128))}
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(state)
        if log is not None:
            log({"loss": loss, "lr": 3e-4, "grad_norm": 1.0 + i * 1e-6, "step_time": 0.001})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--online", action="store_true")
    a = ap.parse_args()
    import arwandb

    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    print("| step | SDK | steps | off: µs/step | on: µs/step | added µs/step | slowdown |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        srv = None
        kw: dict = {"mode": "offline"}
        if a.online:
            from tests.helpers import ServerProcess

            srv = ServerProcess(Path(d) / "data").start()
            kw = {"mode": "online", "base_url": srv.url, "api_key": srv.key}
        try:
            for name, step in (("numpy 128x128", numpy_step), ("pure Python", python_step)):
                off, on = [], []
                for _ in range(a.rounds):
                    off.append(loop(step, a.steps, None))
                    run = arwandb.init(project="bench", dir=d, system_metrics=False, **kw)
                    on.append(loop(step, a.steps, run.log))
                    run.finish()
                o, n = statistics.median(off) / a.steps * 1e6, statistics.median(on) / a.steps * 1e6
                print(f"| {name} | {kw['mode']} | {a.steps} | {o:.2f} | {n:.2f} | {n - o:.2f} | {(n / o - 1) * 100:.1f}% |")
        finally:
            if srv is not None:
                srv.terminate()


if __name__ == "__main__":
    main()
