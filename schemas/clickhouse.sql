-- arwx ClickHouse schema: the one DDL text applied, idempotently, at start on
-- chDB (embedded) and on a ClickHouse server (distributed). Statements are
-- separated by lines holding only ';'. No DEFAULT now(): the consumer stamps
-- times itself so a retried insert is byte-identical (insert dedup tokens).

-- Metric points. Sort key ends in (writer_id, seq) within the run and key:
-- reads by run and key are local, and a replayed point (same run, key,
-- writer, seq) collapses. Reads use FINAL, which is cheap on a key prefix.
-- Skipped (non-finite / non-numeric) values are kept as NaN so a writer's seq
-- range stays whole; every read filters them with isFinite(value).
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
    ingested_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (org, run_id, key, writer_id, seq)
SETTINGS non_replicated_deduplication_window = 10000
;
-- Durability ledger: one row per (log message, writer). Keyed by log
-- coordinates, so a replayed message collapses; a client re-send is a new
-- message and shows up as duplicates_collapsed in the receipt.
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
-- Runs. A row per change; the newest version wins (FINAL).
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
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (org, run_id)
;
-- What each writer says it sent, reported at finish. A row per writer, so
-- ranks finishing at once never overwrite each other.
CREATE TABLE IF NOT EXISTS run_writers
(
    org         LowCardinality(String),
    run_id      String,
    writer_id   String,
    sent        UInt64,
    reported_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(reported_at)
ORDER BY (org, run_id, writer_id)
;
-- Organizations.
CREATE TABLE IF NOT EXISTS orgs
(
    org        String,
    name       String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY org
;
-- API keys: only the SHA-256 of the secret is stored. A revoke is a new
-- version of the row.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_id     String,
    org        String,
    name       String,
    key_hash   String,
    prefix     String,
    created_at DateTime64(3, 'UTC'),
    revoked_at Nullable(DateTime64(3, 'UTC')),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id
