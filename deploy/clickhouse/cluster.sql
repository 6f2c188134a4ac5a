-- arwx on a ClickHouse cluster: replicated local tables + Distributed tables.
--
-- Apply once, before the services start, on any node:
--   clickhouse-client --multiquery < deploy/clickhouse/cluster.sql
-- It needs a cluster named `arwx` in remote_servers and the macros {shard}
-- and {replica} on every node (docs/distributed.md).
--
-- Every table of schemas/clickhouse.sql exists here under its own name as a
-- Distributed table over `<name>_local`, so the services' SQL runs unchanged
-- and their start-up DDL (CREATE ... IF NOT EXISTS) finds everything made.
-- The local tables keep the columns and ORDER BY of schemas/clickhouse.sql
-- (a test checks this); MergeTree engines become their Replicated variants.
--
-- Sharding: dedup by FINAL, the receipt and rollups need all rows of a run on
-- one shard, so run-scoped tables shard by cityHash64(org, run_id). (`runs` is
-- the mirror of the catalog's runs; organizations and API keys live in the
-- catalog, PostgreSQL, not here. A cluster made by an older cluster.sql still
-- has orgs/api_keys/run_writers: the first start imports them.)
-- The consumer's inserts must be synchronous (distributed_foreground_insert=1
-- in its user's profile) so an insert that returns is on the shard, where the
-- insert_deduplication_token of a retry makes it a no-op.

CREATE TABLE IF NOT EXISTS points_local ON CLUSTER arwx
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
    first_wins  UInt64 MATERIALIZED bitNot(log_offset) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/points_local', '{replica}', first_wins)
ORDER BY (org, run_id, key, writer_id, seq)
;
CREATE TABLE IF NOT EXISTS points ON CLUSTER arwx AS points_local
ENGINE = Distributed(arwx, currentDatabase(), points_local, cityHash64(org, run_id))
;
CREATE TABLE IF NOT EXISTS ledger_local ON CLUSTER arwx
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/ledger_local', '{replica}')
ORDER BY (org, run_id, log_topic, log_partition, log_offset, writer_id)
;
CREATE TABLE IF NOT EXISTS ledger ON CLUSTER arwx AS ledger_local
ENGINE = Distributed(arwx, currentDatabase(), ledger_local, cityHash64(org, run_id))
;
CREATE TABLE IF NOT EXISTS seq_conflicts_local ON CLUSTER arwx
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/seq_conflicts_local', '{replica}')
ORDER BY (org, run_id, writer_id, seq, log_topic, log_partition, log_offset, log_index)
;
CREATE TABLE IF NOT EXISTS seq_conflicts ON CLUSTER arwx AS seq_conflicts_local
ENGINE = Distributed(arwx, currentDatabase(), seq_conflicts_local, cityHash64(org, run_id))
;
CREATE TABLE IF NOT EXISTS dead_letters_local ON CLUSTER arwx
(
    log_topic     LowCardinality(String),
    log_partition UInt32,
    log_offset    UInt64,
    reason        String,
    payload       String CODEC(ZSTD(3)),
    dead_at       DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/dead_letters_local', '{replica}')
ORDER BY (log_topic, log_partition, log_offset)
;
CREATE TABLE IF NOT EXISTS dead_letters ON CLUSTER arwx AS dead_letters_local
ENGINE = Distributed(arwx, currentDatabase(), dead_letters_local, cityHash64(log_topic, log_partition, log_offset))
;
CREATE TABLE IF NOT EXISTS runs_local ON CLUSTER arwx
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/runs_local', '{replica}', version)
ORDER BY (org, run_id)
;
CREATE TABLE IF NOT EXISTS runs ON CLUSTER arwx AS runs_local
ENGINE = Distributed(arwx, currentDatabase(), runs_local, cityHash64(org, run_id))
;
-- Run lifecycle columns, for a cluster made before them.
ALTER TABLE runs_local ON CLUSTER arwx ADD COLUMN IF NOT EXISTS tags Array(String),
    ADD COLUMN IF NOT EXISTS notes String, ADD COLUMN IF NOT EXISTS deleted_at Nullable(DateTime64(3, 'UTC'))
;
ALTER TABLE runs ON CLUSTER arwx ADD COLUMN IF NOT EXISTS tags Array(String),
    ADD COLUMN IF NOT EXISTS notes String, ADD COLUMN IF NOT EXISTS deleted_at Nullable(DateTime64(3, 'UTC'))
;
-- Chart cells (see schemas/clickhouse.sql for the packed min/max columns).
-- A cluster made by an older cluster.sql: the services fill chart_cells from
-- points once at their first start (store/schema.py); the old rollups go.
DROP VIEW IF EXISTS point_rollups_mv ON CLUSTER arwx
;
DROP TABLE IF EXISTS point_rollups ON CLUSTER arwx
;
DROP TABLE IF EXISTS point_rollups_local ON CLUSTER arwx
;
CREATE TABLE IF NOT EXISTS chart_cells_local ON CLUSTER arwx
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
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/chart_cells_local', '{replica}')
ORDER BY (org, tier, run_id, key, writer_id, bucket)
SETTINGS index_granularity = 1024
;
CREATE TABLE IF NOT EXISTS chart_cells ON CLUSTER arwx AS chart_cells_local
ENGINE = Distributed(arwx, currentDatabase(), chart_cells_local, cityHash64(org, run_id))
;
CREATE MATERIALIZED VIEW IF NOT EXISTS chart_cells_mv ON CLUSTER arwx TO chart_cells_local AS
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
        FROM points_local
        WHERE isFinite(value)
    )
    GROUP BY org, run_id, key, writer_id, c
)
ARRAY JOIN [4, 6, 8, 10, 12, 14, 16] AS tier
GROUP BY org, tier, run_id, key, writer_id, bucket
;
CREATE TABLE IF NOT EXISTS point_skips_local ON CLUSTER arwx
(
    org       LowCardinality(String),
    run_id    String,
    key       LowCardinality(String),
    writer_id LowCardinality(String),
    seqs      AggregateFunction(groupBitmap, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/point_skips_local', '{replica}')
ORDER BY (org, run_id, key, writer_id)
;
CREATE TABLE IF NOT EXISTS point_skips ON CLUSTER arwx AS point_skips_local
ENGINE = Distributed(arwx, currentDatabase(), point_skips_local, cityHash64(org, run_id))
;
CREATE MATERIALIZED VIEW IF NOT EXISTS point_skips_mv ON CLUSTER arwx TO point_skips_local AS
SELECT org, run_id, key, writer_id, groupBitmapState(seq) AS seqs
FROM points_local
WHERE NOT isFinite(value)
GROUP BY org, run_id, key, writer_id
;
CREATE TABLE IF NOT EXISTS store_info_local ON CLUSTER arwx
(
    name       String,
    value      String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/store_info_local', '{replica}')
ORDER BY (name, created_at)
;
CREATE TABLE IF NOT EXISTS store_info ON CLUSTER arwx AS store_info_local
ENGINE = Distributed(arwx, currentDatabase(), store_info_local, cityHash64(name))
;
