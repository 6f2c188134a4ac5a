#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md, in the order the doc lists them.
# Prints Markdown tables (with the load average and date as HTML comments).
#   bash bench/run_all.sh 2>&1 | tee /tmp/bench.out          (~25 min on 2 cores)
# Needs: pip install -r bench/requirements.txt (mlflow, wandb); Java 17 for --kafka auto.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
say() { echo; echo "### $*"; echo "<!-- $(uptime) -->"; }

say "1a ingest, embedded, JSON, 8 writers, 60 s (the headline)"
$PY bench/bench_ingest.py --writers 8 --seconds 60 --format json --rss-every 5
say "1b ingest, embedded, sustained at a fixed offered rate, 60 s"
$PY bench/bench_ingest.py --writers 8 --seconds 60 --rate 200000
say "1c ingest, embedded, JSON, 1 and 64 writers, 20 s"
$PY bench/bench_ingest.py --writers 1 64 --seconds 20 --format json
say "1d ingest, embedded, NDJSON streams, 1 8 64 writers, 20 s"
$PY bench/bench_ingest.py --writers 1 8 64 --seconds 20 --format ndjson --batch 2000
say "1e gateway accept rate alone (no consumer running), 8 writers, 20 s"
$PY bench/bench_ingest.py --writers 8 --seconds 20 --accept-only
say "1f ingest, Kafka mode (local single-node broker), JSON 1 and 8 writers, NDJSON 8 writers, 20 s"
$PY bench/bench_ingest.py --kafka auto --writers 1 8 --seconds 20 --format json ndjson
say "6 cost growth: runs 1 10 100 (8 writers, 15 s)"
$PY bench/bench_ingest.py --writers 8 --runs 1 10 100 --seconds 15 --batch 1000
say "2 freshness at about half the end-to-end maximum"
$PY bench/bench_freshness.py --rate 120000 --seconds 30
say "5 peers: MLflow server, wandb offline"
$PY bench/bench_peers.py --points 10000 100000 --calls 20000
say "4a SDK log() cost"
PYTHONPATH=sdk $PY bench/bench_sdk_log.py --calls 200000
say "4b training loop slowdown"
$PY bench/bench_train_overhead.py --steps 20000 --rounds 3
say "7a history reads over HTTP, paging, stream, receipt freshness (bench_history.py)"
$PY bench/bench_history.py --points 100000 --pages-points 1000000
say "7b charts: one metric 10^5..10^7 points, dashboard 50 runs x 10 keys (bench_charts.py)"
$PY bench/bench_charts.py --exps 5 6 7 --samples 320 --reps 20 --project 50 10 100000
if [ "${LONG:-0}" = 1 ]; then   # LONG=1 bash bench/run_all.sh: + the 10-minute memory run (~12 min)
  say "3 memory: 10 minutes at 150k points/s offered"
  $PY bench/bench_ingest.py --writers 8 --seconds 600 --rate 150000 --rss-every 30
fi
say "11 capacity per unit of the distributed topology (separate processes), the model, a 2+2+2 check"
$PY bench/bench_capacity.py --seconds 20 --writers 8
say "7 blobs: 2 GiB up and down, directory and S3 (SeaweedFS)"
$PY bench/bench_blobs.py
