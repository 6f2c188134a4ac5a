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
-- Chart cells: per (run, key, writer) and power-of-two step cells (tiers
-- 2^4, 2^6, ... 2^16: a factor 4 apart, so a chart reads at most about 4 cells
-- per output bucket), finite values only. seq_min/seq_max let a raw read of a
-- step range prune by the points sort key. Every column is a plain min or max,
-- so it is idempotent (a replayed or re-sent point never changes a cell: no
-- sum or count is kept on purpose, see docs/query.md) and rows of one cell
-- from several inserts fold with min/max at read time, no state to decode:
--   first = min of (step, seq, value bits) packed into a UInt256 (step in the
--           top bits), last = max of the same: the first/last point by
--           (step, seq) and its value;
--   low   = min of (ordered value bits, step) packed into a UInt128, high = max
--           of the same: the extreme values and their steps. "Ordered" maps a
--           Float64 onto a UInt64 of the same order (sign bit set for
--           positives, all bits flipped for negatives), so integer order is
--           value order.
-- Native-width integer min/max merge several times faster than the
-- argMin/argMax states this replaces (point_rollups, dropped below), and tier
-- leads the sort key so the cells of one tier of a project's runs are
-- contiguous (a dashboard reads few granules). Decoding: query/rollups.py.
CREATE TABLE IF NOT EXISTS chart_cells
(
    org        LowCardinality(String),
    tier       UInt8,
    run_id     String,
    key        LowCardinality(String),
    writer_id  LowCardinality(String),
    bucket     UInt64,
    seq_min    SimpleAggregateFunction(min, UInt64),
    seq_max    SimpleAggregateFunction(max, UInt64),
    ts_min     SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ts_max     SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    first      SimpleAggregateFunction(min, UInt256),
    last       SimpleAggregateFunction(max, UInt256),
    low        SimpleAggregateFunction(min, UInt128),
    high       SimpleAggregateFunction(max, UInt128)
)
ENGINE = AggregatingMergeTree
ORDER BY (org, tier, run_id, key, writer_id, bucket)
-- Small granules: a series' cells of one tier are a few hundred rows; with
-- the default 8192 a chart of a few series read (and merged) far more rows
-- than it used.
SETTINGS index_granularity = 1024
;
-- Fills chart_cells on every insert into points: each point is packed once,
-- the block is cut into 16-step cells, then each cell is folded into every
-- tier. A store made before chart_cells is filled from points once at start
-- (store/schema.py: the same SELECT over the stored points).
CREATE MATERIALIZED VIEW IF NOT EXISTS chart_cells_mv TO chart_cells AS
SELECT org, tier, run_id, key, writer_id,
    intDiv(c, bitShiftLeft(toUInt64(1), tier - 4)) AS bucket,
    min(q_lo) AS seq_min, max(q_hi) AS seq_max, min(t_lo) AS ts_min, max(t_hi) AS ts_max,
    min(f) AS first, max(l) AS last, min(lo) AS low, max(hi) AS high
FROM
(
    SELECT org, run_id, key, writer_id, intDiv(step, 16) AS c,
        min(seq) AS q_lo, max(seq) AS q_hi, min(ts) AS t_lo, max(ts) AS t_hi,
        min(pos) AS f, max(pos) AS l, min(ext) AS lo, max(ext) AS hi
    FROM
    (
        SELECT org, run_id, key, writer_id, seq, step, ts, reinterpretAsUInt64(value) AS bits,
            bitOr(bitShiftLeft(toUInt256(step), 128), bitOr(bitShiftLeft(toUInt256(seq), 64), toUInt256(bits))) AS pos,
            bitOr(bitShiftLeft(toUInt128(if(bitTest(bits, 63), bitNot(bits), bitOr(bits, 9223372036854775808))), 64), toUInt128(step)) AS ext
        FROM points
        WHERE isFinite(value)
    )
    GROUP BY org, run_id, key, writer_id, c
)
ARRAY JOIN [4, 6, 8, 10, 12, 14, 16] AS tier
GROUP BY org, tier, run_id, key, writer_id, bucket
;
-- The rollups before chart_cells (argMin/argMax states): their view would
-- cost every insert, and nothing reads them any more.
DROP VIEW IF EXISTS point_rollups_mv
;
DROP TABLE IF EXISTS point_rollups
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
