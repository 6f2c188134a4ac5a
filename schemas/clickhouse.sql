-- arwx ClickHouse schema: the one DDL text applied, idempotently, at start on
-- chDB (embedded) and on a ClickHouse server (distributed). Statements are
-- separated by lines holding only ';'. No DEFAULT now(): the consumer stamps
-- times itself so a retried insert is byte-identical (insert dedup tokens).

-- Metric points. Sort key ends in (writer_id, seq) within the run and key:
-- reads by run and key are local, and a replayed point (same run, key,
-- writer, seq) collapses. Reads use FINAL, which is cheap on a key prefix.
-- Skipped (non-finite / non-numeric) values are kept as NaN so a writer's seq
-- range stays whole; every read filters them with isFinite(value).
-- The first value written for a (run, writer, seq) wins: the consumer drops
-- re-sent seqs before inserting (consumer/first_wins.py). Should two versions
-- of one point still meet here, the version column makes the engine keep the
-- earlier log position too (a run's messages share one log partition).
CREATE TABLE IF NOT EXISTS points
(
    org         LowCardinality(String),
    run_id      String,
    key         LowCardinality(String),
    writer_id   LowCardinality(String),
    seq         UInt64 CODEC(Delta, ZSTD(1)),
    step        UInt64 CODEC(Delta, ZSTD(1)),
    ts          DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value       Float64 CODEC(Gorilla, ZSTD(1)),
    log_partition UInt32 CODEC(ZSTD(1)),
    log_offset  UInt64 CODEC(Delta, ZSTD(1)),
    ingested_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    first_wins  UInt64 MATERIALIZED bitNot(log_offset) CODEC(Delta, ZSTD(1)),
    -- Within a writer, step follows seq: granules have tight step ranges, so
    -- history windows by step skip the rest of the run.
    INDEX step_range step TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(first_wins)
ORDER BY (org, run_id, key, writer_id, seq)
SETTINGS non_replicated_deduplication_window = 10000
;
-- Durability ledger: one row per (log message, writer). Keyed by log
-- coordinates, so a replayed message collapses; a client re-send is a new
-- message and shows up as duplicates_collapsed (or conflicts) in the receipt:
-- a row counts every point of its message, also those dropped as re-sends.
CREATE TABLE IF NOT EXISTS ledger
(
    org          LowCardinality(String),
    run_id       String,
    writer_id    String,
    seq_min      UInt64,
    seq_max      UInt64,
    points       UInt32,
    skipped      UInt32,
    log_topic    LowCardinality(String),
    log_partition UInt32,
    log_offset   UInt64,
    committed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org, run_id, log_topic, log_partition, log_offset, writer_id)
SETTINGS non_replicated_deduplication_window = 10000
;
-- Re-sent seqs that carried another key, step or value than the stored
-- point (a client bug): the first value was kept, the re-sent one dropped and
-- recorded here, one row per rejected point, keyed by where it sat in the log
-- so a replay collapses. The receipt counts them as `conflicts`.
CREATE TABLE IF NOT EXISTS seq_conflicts
(
    org           LowCardinality(String),
    run_id        String,
    writer_id     String,
    seq           UInt64,
    kept_key      String,
    kept_step     UInt64,
    kept_value    Float64,
    key           String,
    step          UInt64,
    value         Float64,
    log_topic     LowCardinality(String),
    log_partition UInt32,
    log_offset    UInt64,
    log_index     UInt32,
    detected_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (org, run_id, writer_id, seq, log_topic, log_partition, log_offset, log_index)
SETTINGS non_replicated_deduplication_window = 10000
;
-- Log messages that could not be decoded or written (poison), with where they
-- came from and why. Never used for store outages: those pause and retry.
CREATE TABLE IF NOT EXISTS dead_letters
(
    log_topic     LowCardinality(String),
    log_partition UInt32,
    log_offset    UInt64,
    reason        String,
    payload       String CODEC(ZSTD(3)),
    dead_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (log_topic, log_partition, log_offset)
;
-- Runs: a mirror of the catalog's runs (the catalog is the truth; see
-- services/arwx/catalog/mirror.py), kept so SQL here can filter and label
-- points by project and run name. A row per change; the newest catalog
-- version wins (FINAL).
CREATE TABLE IF NOT EXISTS runs
(
    org           LowCardinality(String),
    run_id        String,
    project       String,
    name          String,
    status        LowCardinality(String),
    config        String,
    writer_ids    Array(String),
    fingerprint   String,
    created_at    DateTime64(3, 'UTC'),
    finished_at   Nullable(DateTime64(3, 'UTC')),
    version       UInt64,
    tags          Array(String),
    notes         String,
    deleted_at    Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (org, run_id)
;
-- Run lifecycle columns, for a store made before them (the mirror is then
-- re-synced from the catalog at start: Runs.sync_mirror).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS tags Array(String)
;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS notes String
;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS deleted_at Nullable(DateTime64(3, 'UTC'))
;
-- Organizations, API keys and writer totals live in the catalog; a store
-- written before it still has those tables, which the first start imports
-- (services/arwx/catalog/legacy.py).
-- Chart rollups: per (run, key, writer) and power-of-two step cells (tiers
-- 2^4, 2^6, ... 2^16: a factor 4 apart, so a chart reads at most about 4 cells
-- per output bucket), finite values only. seq_min/seq_max let a raw read of a
-- step range prune by the points sort key. Every state here is idempotent
-- (min, max, and first/last/extreme positions by argMin/argMax on unique
-- keys), so a replayed or re-sent point never changes a cell: no sum or count
-- is kept on purpose (see docs/query.md). Rows of one cell from several
-- inserts are combined by the -Merge reads (and by background merges).
CREATE TABLE IF NOT EXISTS point_rollups
(
    org        LowCardinality(String),
    run_id     String,
    key        LowCardinality(String),
    writer_id  LowCardinality(String),
    tier       UInt8,
    bucket     UInt64,
    step_min   SimpleAggregateFunction(min, UInt64),
    step_max   SimpleAggregateFunction(max, UInt64),
    seq_min    SimpleAggregateFunction(min, UInt64),
    seq_max    SimpleAggregateFunction(max, UInt64),
    ts_min     SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ts_max     SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    vmin       SimpleAggregateFunction(min, Float64),
    vmax       SimpleAggregateFunction(max, Float64),
    first      AggregateFunction(argMin, Float64, Tuple(UInt64, UInt64)),
    last       AggregateFunction(argMax, Float64, Tuple(UInt64, UInt64)),
    vmin_step  AggregateFunction(argMin, UInt64, Float64),
    vmax_step  AggregateFunction(argMax, UInt64, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (org, run_id, key, writer_id, tier, bucket)
-- Small granules: a series holds ~1.3 rows per 16 steps over all tiers, so
-- with the default 8192 one granule held every tier of a 100k-step series
-- and a chart read (and -Merged) them all; 1024 lets the tier condition
-- prune (a 50-series chart: 2x less CPU, measured).
SETTINGS index_granularity = 1024
;
-- Fills point_rollups on every insert into points: the block is cut into
-- 16-step cells once, then each cell is folded into every tier.
CREATE MATERIALIZED VIEW IF NOT EXISTS point_rollups_mv TO point_rollups AS
SELECT org, run_id, key, writer_id, tier,
    intDiv(c, bitShiftLeft(toUInt64(1), tier - 4)) AS bucket,
    min(s_lo) AS step_min, max(s_hi) AS step_max, min(q_lo) AS seq_min, max(q_hi) AS seq_max, min(t_lo) AS ts_min, max(t_hi) AS ts_max,
    min(lo) AS vmin, max(hi) AS vmax,
    argMinState(f, fk) AS first, argMaxState(l, lk) AS last,
    argMinState(lo_step, lo) AS vmin_step, argMaxState(hi_step, hi) AS vmax_step
FROM
(
    SELECT org, run_id, key, writer_id, intDiv(step, 16) AS c,
        min(step) AS s_lo, max(step) AS s_hi, min(seq) AS q_lo, max(seq) AS q_hi, min(ts) AS t_lo, max(ts) AS t_hi,
        min(value) AS lo, max(value) AS hi,
        argMin(value, (step, seq)) AS f, min((step, seq)) AS fk,
        argMax(value, (step, seq)) AS l, max((step, seq)) AS lk,
        argMin(step, value) AS lo_step, argMax(step, value) AS hi_step
    FROM points
    WHERE isFinite(value)
    GROUP BY org, run_id, key, writer_id, c
)
ARRAY JOIN [4, 6, 8, 10, 12, 14, 16] AS tier
GROUP BY org, run_id, key, writer_id, tier, bucket
;
-- Skipped (non-finite) points per series, as a bitmap of their seqs: exact
-- and idempotent (a replayed skip is the same seq). Skips are rare, so small.
CREATE TABLE IF NOT EXISTS point_skips
(
    org       LowCardinality(String),
    run_id    String,
    key       LowCardinality(String),
    writer_id LowCardinality(String),
    seqs      AggregateFunction(groupBitmap, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (org, run_id, key, writer_id)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS point_skips_mv TO point_skips AS
SELECT org, run_id, key, writer_id, groupBitmapState(seq) AS seqs
FROM points
WHERE NOT isFinite(value)
GROUP BY org, run_id, key, writer_id
;
-- The store's identity, made once when the store is new (the earliest row
-- wins). The embedded log records which store it feeds: a store made anew
-- under a log that fed another one is refused at start (docs/reliability.md).
CREATE TABLE IF NOT EXISTS store_info
(
    name       String,
    value      String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (name, created_at)
