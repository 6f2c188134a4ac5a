"""Host telemetry from /proc, os.statvfs and (if present) nvidia-smi, under ``system/*`` keys.

Every source is optional: anything missing or unreadable is skipped silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

_MB = 1024.0 * 1024.0
_GPU_FIELDS = "index,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,temperature.gpu"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    s = _read("/proc/stat")
    if not s or not s.startswith("cpu "):
        return None
    vals = [int(x) for x in s.split("\n", 1)[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already in user/nice
    return total - idle, total


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        k, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[k] = int(parts[0]) * 1024
    return out


def _disk_sectors() -> tuple[int, int] | None:
    """(read, written) bytes over whole physical disks (partitions, loop, ram and dm devices excluded)."""
    s = _read("/proc/diskstats")
    if not s:
        return None
    try:
        disks = set(os.listdir("/sys/block"))
    except OSError:
        disks = set()
    r = w = 0
    for line in s.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        name = f[2]
        if disks and name not in disks:
            continue
        if name.startswith(("loop", "ram", "dm-", "zram", "md")):
            continue
        r += int(f[5]) * 512
        w += int(f[9]) * 512
    return r, w


def _net_bytes() -> tuple[int, int] | None:
    """(received, sent) bytes over all interfaces but loopback."""
    s = _read("/proc/net/dev")
    if not s:
        return None
    rx = tx = 0
    for line in s.splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if name.strip() == "lo" or len(f) < 9:
            continue
        rx += int(f[0])
        tx += int(f[8])
    return rx, tx


def _rss_bytes() -> int | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


class SystemSampler:
    """Computes one sample of system/* metrics; deltas are against the previous sample or the start."""

    def __init__(self, disk_path: str) -> None:
        self.disk_path = disk_path
        self._cpu = self._safe(_cpu_times)
        self._proc = (os.times(), time.monotonic())
        self._disk0 = self._safe(_disk_sectors)
        self._net0 = self._safe(_net_bytes)
        self._nvsmi = shutil.which("nvidia-smi")
        self._gpu_failures = 0

    @staticmethod
    def _safe(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - a sandboxed /proc must never break a run
            return None

    def sample(self) -> dict[str, float]:
        m: dict[str, float] = {}
        for part in (self._cpu_part, self._mem_part, self._disk_part, self._net_part, self._gpu_part):
            with contextlib.suppress(Exception):
                part(m)
        return m

    def _cpu_part(self, m: dict[str, float]) -> None:
        now = _cpu_times()
        if now and self._cpu:
            db, dt = now[0] - self._cpu[0], now[1] - self._cpu[1]
            if dt > 0:
                m["system/cpu"] = 100.0 * db / dt
        self._cpu = now
        t, w = os.times(), time.monotonic()
        t0, w0 = self._proc
        if w > w0:
            m["system/proc.cpu"] = 100.0 * ((t.user + t.system) - (t0.user + t0.system)) / (w - w0)
        self._proc = (t, w)
        m["system/proc.cpu.threads"] = float(threading.active_count())

    def _mem_part(self, m: dict[str, float]) -> None:
        mi = _meminfo()
        total, avail = mi.get("MemTotal"), mi.get("MemAvailable")
        if total and avail is not None:
            m["system/memory_percent"] = 100.0 * (total - avail) / total
            m["system/proc.memory.availableMB"] = avail / _MB
        rss = _rss_bytes()
        if rss is not None:
            m["system/proc.memory.rssMB"] = rss / _MB
            if total:
                m["system/proc.memory.percent"] = 100.0 * rss / total

    def _disk_part(self, m: dict[str, float]) -> None:
        st = os.statvfs(self.disk_path)
        total = st.f_blocks * st.f_frsize
        if total:
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            m["system/disk.usagePercent"] = 100.0 * used / total
            m["system/disk.usageGB"] = used / (_MB * 1024)
        now = _disk_sectors()
        if now and self._disk0:
            m["system/disk.in"] = (now[0] - self._disk0[0]) / _MB  # MB read since the run started
            m["system/disk.out"] = (now[1] - self._disk0[1]) / _MB

    def _net_part(self, m: dict[str, float]) -> None:
        now = _net_bytes()
        if now and self._net0:
            m["system/network.recv"] = float(now[0] - self._net0[0])  # bytes since the run started
            m["system/network.sent"] = float(now[1] - self._net0[1])

    def _gpu_part(self, m: dict[str, float]) -> None:
        if not self._nvsmi or self._gpu_failures >= 3:
            return
        try:
            out = subprocess.run(
                [self._nvsmi, f"--query-gpu={_GPU_FIELDS}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            self._gpu_failures += 1
            return
        self._gpu_failures = 0
        for line in out.strip().splitlines():
            f = [x.strip() for x in line.split(",")]
            if len(f) < 7:
                continue
            i = f[0]
            util, memutil, used, total, power, temp = (_num(x) for x in f[1:7])
            p = f"system/gpu.{i}."
            for k, v in (("util", util), ("memory", memutil), ("powerWatts", power), ("temp", temp)):
                if v is not None:
                    m[p + k] = v
            if used is not None:
                m[p + "memoryAllocatedBytes"] = used * _MB  # nvidia-smi reports MiB
                if total:
                    m[p + "memoryAllocated"] = 100.0 * used / total


class SystemMetricsThread(threading.Thread):
    """Samples every ``interval`` seconds and hands the sample to ``emit`` (the run's system writer)."""

    def __init__(self, emit: Callable[[dict[str, float]], None], interval: float, disk_path: str) -> None:
        super().__init__(name="arwandb-system-metrics", daemon=True)
        self.emit = emit
        self.interval = max(1.0, interval)
        self.disk_path = disk_path
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            sampler = SystemSampler(self.disk_path)
        except Exception:  # noqa: BLE001
            return
        while not self.stop_event.wait(self.interval):
            try:
                sample = sampler.sample()
                if sample:
                    self.emit(sample)
            except Exception:  # noqa: BLE001 - telemetry is best-effort
                pass

    def stop(self) -> None:
        self.stop_event.set()
