"""The ingest benchmark's quick mode as a smoke test: it runs, and nothing is lost.

Benchmarks print figures and are not pass/fail; ``--quick`` only asserts that
every acknowledged point is stored (the integrity receipt is intact).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_ingest_quick_loses_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ingest.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| True |" in proc.stdout, proc.stdout
