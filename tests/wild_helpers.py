"""Helpers for the Wild V2 tests: a client speaking ``X-Auth-Token``, a real ``arwx runner`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, Api, ServerProcess, catalog_url_for, wait_for

# A training script as the seed's commands run it: logs metrics through arwandb, unchanged
# by the runner (the run, project and key come from ARWANDB_* in its environment).
TRAIN_SCRIPT = '''\
import argparse
import arwandb

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--device", default="cpu")
p.add_argument("--log-dir", default="exp/logs")
p.add_argument("--out-dir", default="exp/outputs")
a = p.parse_args()
arwandb.init(config={"lr": a.lr, "batch_size": a.batch_size, "seed": a.seed}, system_metrics=False)
for step in range(a.steps):
    arwandb.log({"loss": a.lr * 100 / (step + 1), "acc": step / a.steps})
print(f"trained lr={a.lr} seed={a.seed} steps={a.steps}", flush=True)
arwandb.finish()
'''


class WildApi(Api):
    """The seed's client: the key in ``X-Auth-Token``, never ``Authorization``."""

    def __init__(self, url: str, key: str | None) -> None:
        super().__init__(url, key, key_header="X-Auth-Token")

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None, params: dict | None = None,
                headers: dict | None = None) -> tuple[int, Any]:
        return super().request(method, path, body=body, raw=raw, params=params,
                               headers={"Content-Type": "application/json", **(headers or {})})


def operator_key(data_dir: Path) -> str:
    """What an operator does before the first start: ``arwx keys create`` with admin and launch
    (the server's own first key holds no launch, and a key grants only scopes it holds)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "services"))
    cmd = [sys.executable, "-m", "arwx.cli", "keys", "create", "--org", "default", "--name", "operator",
           "--scopes", "read,write,admin,launch", "--data-dir", str(data_dir)]
    catalog = catalog_url_for(data_dir)
    if catalog:
        cmd += ["--catalog", catalog]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key: "))


def start_server(data_dir: Path, extra: list[str], port: int | None = None) -> tuple[ServerProcess, Api]:
    """A real ``arwx server`` and an operator key holding admin and launch (made first, on a new directory)."""
    key = operator_key(data_dir) if not data_dir.exists() else None
    srv = ServerProcess(data_dir, port=port, extra=extra).start()
    srv.key = srv.key or key
    return srv, srv.api()


def launch_key(admin: Api, name: str = "launcher", scopes: tuple[str, ...] = ("read", "write", "launch")) -> str:
    """A new key of ``admin``'s org holding ``launch`` (besides read and write unless told)."""
    return admin.ok("POST", "/v1/keys", {"name": name, "scopes": list(scopes)})["key"]


def runner_key(admin: Api, name: str) -> str:
    """What a runner needs, and nothing more: ``launch``."""
    return launch_key(admin, name, ("launch",))


class RunnerProcess:
    """``arwx runner`` as a real process."""

    def __init__(self, server_url: str, key: str, root: Path, runner_id: str, **flags: Any) -> None:
        self.runner_id = runner_id
        self.root = root
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "services"), str(ROOT / "sdk"), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env["ARWX_RUNNER_KEY"] = key
        args = {"runner_server": server_url, "runner_root": str(root), "runner_id": runner_id,
                "runner_heartbeat_s": 0.3, "runner_poll_s": 0.2, "runner_stop_grace_s": 2, **flags}
        cmd = [sys.executable, "-m", "arwx.cli", "runner"]
        for k, v in args.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        wait_for(lambda: any("taking runs from" in ln for ln in self.lines) or self.proc.poll() is not None,
                 30, 0.05, "the runner to start")
        assert self.proc.poll() is None, "".join(self.lines)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
