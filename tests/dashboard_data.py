"""Data for the dashboard's browser tests, its screenshots and its benchmark, written over HTTP
the way clients write it: runs with points (``/v1/ingest/stream``), and the autoresearch loop
(goal, session, experiments with diff and code, decisions, an artifact promoted to ``winner``)."""

from __future__ import annotations

import hashlib
import json
import math

from tests.helpers import Api, ndjson

TS0 = 1_764_000_000.0


def metric_value(key: str, step: int, run_no: int = 0) -> float:
    """A deterministic, plausible curve per key (a spike every 997 steps keeps bands honest)."""
    if key.startswith("system/"):
        return 40 + 20 * math.sin(step / 37 + run_no) + (run_no % 5) + len(key)
    if key.endswith("lr"):
        return 3e-3 * (run_no + 1) * min(1.0, (step + 1) / 200) * (0.5 + 0.5 * math.cos(math.pi * min(step, 5000) / 5000))
    if "acc" in key:
        return 1 - 0.9 * math.exp(-step / (300 + 50 * run_no))
    base = 2.5 * math.exp(-step / 400) + 0.05 * math.sin(step / 7 + run_no) + 0.1 * run_no / 10 + 0.3
    return base + (1.0 if step % 997 == 500 else 0.0) + len(key) * 0.01


def run_points(run_id: str, writer: str, keys: list[str], steps: range, run_no: int = 0, seq0: int = 0) -> list[dict]:
    """Every key at every step for one writer; seq counts the writer's points from ``seq0``."""
    out, seq = [], seq0
    for step in steps:
        for key in keys:
            out.append({"run_id": run_id, "writer_id": writer, "seq": seq, "step": step, "key": key,
                        "value": metric_value(key, step, run_no), "ts": TS0 + step * 0.5})
            seq += 1
    return out


def make_run(
    api: Api, project: str, run_id: str, *, name: str | None = None, keys: list[str], steps: int,
    writers: tuple[str, ...] = ("rank0",), config: dict | None = None, run_no: int = 0, finish: bool = True,
) -> int:
    """A run with ``steps`` points per key and writer, sent and (optionally) finished. Returns points sent."""
    api.ok("POST", "/v1/runs", {"id": run_id, "project": project, "name": name or run_id,
                                "config": config or {}, "writer_ids": list(writers)})
    sent = 0
    for w in writers:
        chunk = 20_000 // max(1, len(keys))
        seq = 0
        for lo in range(0, steps, chunk):
            pts = run_points(run_id, w, keys, range(lo, min(steps, lo + chunk)), run_no, seq)
            seq += len(pts)
            api.ok("POST", "/v1/ingest/stream", raw=ndjson(pts))
        sent += seq
    if finish:
        per = steps * len(keys)
        api.ok("POST", f"/v1/runs/{run_id}/finish", {"status": "finished", "writer_totals": {w: per for w in writers}})
    return sent


def upload(api: Api, data: bytes) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    api.ok("POST", "/v1/blobs", raw=data, params={"sha256": sha})
    return {"sha256": sha, "size": len(data)}


TRAIN_V1 = b"lr = 3e-3\nwarmup = 0\n\nfor step in range(1000):\n    train(step)\n"
TRAIN_V2 = b"lr = 3e-3\nwarmup = 200\n\nfor step in range(1000):\n    train(step, warmup=warmup)\n"
DIFF = (
    "--- a/train.py\n+++ b/train.py\n@@ -1,5 +1,5 @@\n lr = 3e-3\n-warmup = 0\n+warmup = 200\n \n"
    " for step in range(1000):\n-    train(step)\n+    train(step, warmup=warmup)\n"
)

# (note, decision, score): the loop an agent ran; lower is better, target 2.45.
LOOP = [
    ("baseline", "keep", 2.71),
    ("lr 1e-2: diverged", "drop", 3.40),
    ("add 200-step warmup", "keep", 2.58),
    ("batch 128", "drop", 2.61),
    ("cosine schedule", "keep", 2.47),
    ("wider MLP", "drop", 2.49),
    ("tie embeddings", "keep", 2.43),
]


def autoresearch(api: Api, project: str) -> dict:
    """The loop over HTTP: goal, session, one experiment per ``LOOP`` entry (the one that added
    warmup with its diff and a code snapshot), decisions, and the best one's model promoted to
    ``winner``. Returns the ids made."""
    api.ok("POST", "/v1/projects", {"name": project, "objective_metric": "val_bpb", "lower_is_better": True,
                                    "target": 2.45})
    session = api.ok("POST", "/v1/sessions", {"project": project, "tag": "tune-schedule", "branch": "exp/schedule"})
    v1, v2 = upload(api, TRAIN_V1), upload(api, TRAIN_V2)
    ids = []
    for i, (note, status, score) in enumerate(LOOP):
        body: dict = {"project": project, "note": note, "commit": f"{i + 1:07x}", "config": {"lr": 3e-3, "n": i}}
        if note.startswith("add 200-step warmup"):
            body["diff"] = DIFF
        exp = api.ok("POST", "/v1/experiments", body)
        tree = v2 if i >= 2 else v1
        api.ok("PUT", f"/v1/experiments/{exp['id']}/tree", {"files": {"train.py": {**tree, "mode": 33188}}})
        api.ok("POST", f"/v1/experiments/{exp['id']}/decision", {"status": status, "score": score, "metric": "val_bpb"})
        ids.append(exp["id"])
    best = ids[[i for i, (_, s, _) in enumerate(LOOP) if s == "keep"][-1]]
    model_a, model_b = upload(api, b"weights v1 " * 100), upload(api, b"weights v2 " * 120)
    for exp_id, model in ((ids[2], model_a), (best, model_b)):
        api.ok("POST", "/v1/artifacts/log", {"project": project, "name": "char-lm-model", "type": "model",
                                             "manifest": {"model.pt": model}, "produced_by": exp_id})
    api.ok("PUT", "/v1/artifacts/char-lm-model/refs/winner",
           {"project": project, "version": "v2", "expected_version": None, "reason": "val_bpb 2.43 < 2.45"})
    return {"session": session["id"], "experiments": ids, "best": best, "warmup": ids[2]}


def dumps(o: object) -> str:
    return json.dumps(o, sort_keys=True)
