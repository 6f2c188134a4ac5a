"""The SDK's public surface, pinned; and the uploader driven through an injected transport."""

from __future__ import annotations

import importlib
import os
import time

import pytest
from memory_transport import MemoryTransport

import arwandb
from arwandb import _sync
from arwandb._run import Run
from arwandb.config import resolve

SDK_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "arwandb")


def test_exported_names_are_pinned() -> None:
    # Adding or removing a public name is an API change: make it here on purpose.
    assert sorted(arwandb.__all__) == sorted(
        ["ResumeError", "Run", "Settings", "finish", "init", "log", "run", "sync", "__version__"]
    )
    for name in arwandb.__all__:
        assert hasattr(arwandb, name), name
    assert arwandb.Run is Run and callable(arwandb.sync) and callable(arwandb.init)
    # Public modules: nothing named like a module-level attribute (``arwandb.run`` is the active run).
    public = sorted(
        f[:-3] for f in os.listdir(SDK_PACKAGE) if f.endswith(".py") and not f.startswith("_")
    )
    assert public == ["autoresearch", "columns", "config", "encode", "resume", "spool", "system_metrics", "uploader"]
    from arwandb import autoresearch

    assert sorted(autoresearch.__all__) == sorted([
        "OfflineError", "ResearchError", "artifact", "artifacts", "configure", "context", "decision",
        "download_artifact", "experiment", "frontier", "get_artifact", "goal", "pending", "progress",
        "promote", "session", "sync",
    ])
    for name in autoresearch.__all__:
        assert hasattr(autoresearch, name), name
    assert not set(public) & set(arwandb.__all__)


def test_private_modules_do_not_hide_behind_module_attributes() -> None:
    assert importlib.import_module("arwandb._run").Run is arwandb.Run
    assert importlib.import_module("arwandb._sync").sync is _sync.sync
    for gone in ("arwandb.run", "arwandb.sync"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)


def _settings(tmp_path, run_id: str, mode: str = "online", finish_timeout: float = 10.0):  # noqa: ANN001, ANN202
    return resolve(
        project="p", name=None, config={"lr": 0.1}, writer_id="w", system_metrics=False, system_interval=None,
        mode=mode, id=run_id, dir=str(tmp_path), base_url="http://127.0.0.1:9", api_key=None,
        flush_interval=0.05, finish_timeout=finish_timeout,
    )


def test_a_run_uploads_through_an_injected_transport(tmp_path) -> None:
    mem = MemoryTransport()
    run = Run(_settings(tmp_path, "mem1"), transport=mem)
    for i in range(1234):
        run.log({"loss": 1.0 / (i + 1)})
    run.finish()
    assert mem.seqs("mem1", "w") == list(range(1234))  # each point once, nothing over a socket
    assert mem.runs["mem1"]["config"] == {"lr": 0.1}
    assert mem.finishes == [{"status": "finished", "writer_totals": {"w": 1234}}]
    assert mem.calls[0] == ("POST", "/v1/runs") and mem.calls[-1] == ("POST", "/v1/runs/mem1/finish")
    assert mem.closed  # the uploader closed its transport


def test_sync_drains_until_its_deadline_then_keeps_the_rest(tmp_path) -> None:
    run = Run(_settings(tmp_path, "off2", mode="offline"))
    for i in range(300):
        run.log({"v": i})
    run.finish()
    down = MemoryTransport()
    down.down = True
    t0 = time.monotonic()
    first = arwandb.sync(str(tmp_path), timeout=0.5, transport=down)
    assert first["pending"] == 300 and first["uploaded"] == 0
    assert time.monotonic() - t0 < 20  # gave up at its deadline instead of retrying for ever
    up = MemoryTransport()
    second = arwandb.sync(str(tmp_path), timeout=20, transport=up)
    assert second["uploaded"] == 300 and second["pending"] == 0
    assert up.seqs("off2", "w") == list(range(300))
    assert up.finishes == [{"status": "finished", "writer_totals": {"w": 300}}]
    assert arwandb.sync(str(tmp_path), timeout=20, transport=up)["uploaded"] == 0  # nothing twice
