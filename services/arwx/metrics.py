"""Service metrics (Prometheus), served at ``/metrics`` on every process's ops listener.

Names follow Prometheus conventions: the ``arwx_`` prefix, the unit in the name,
``_total`` on counters. Gauges that need a look at the log (consumer lag, the
embedded log's backlog) are sampled when scraped (``arwx.ops``), so they are
never staler than the scrape itself.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("arwx_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "arwx_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POINTS_ACCEPTED = Counter("arwx_points_accepted_total", "Points durably appended to the log")
POINTS_SKIPPED = Counter("arwx_points_skipped_total", "Points whose value was skipped", ["reason"])
POINTS_REJECTED = Counter("arwx_points_rejected_total", "Points or lines rejected as bad input", ["reason"])
LOG_APPEND_SECONDS = Histogram(
    "arwx_log_append_duration_seconds",
    "Time for the log to make an append durable",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
LOG_UNAVAILABLE = Counter("arwx_log_unavailable_total", "Appends refused because the log was down or full")
POINTS_STORED = Counter("arwx_consumer_points_written_total", "Points written to the store by the consumer")
SEQ_CONFLICTS = Counter(
    "arwx_seq_conflicts_total", "Re-sent seqs dropped because they carried another key, step or value than the first"
)
CONSUMER_BATCH_ROWS = Histogram(
    "arwx_consumer_batch_rows",
    "Points per consumer batch",
    buckets=(10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000),
)
CONSUMER_WRITE_SECONDS = Histogram(
    "arwx_consumer_write_duration_seconds",
    "Time to write one batch (points and ledger) to the store",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "arwx_consumer_lag_messages",
    "Log messages appended but not yet committed by the consumer group, per partition (sampled at scrape)",
    ["topic", "partition"],
)
CONSUMER_PAUSED = Gauge(
    "arwx_consumer_paused", "1 while the consumer waits for the store to take writes again (disk full, down), else 0"
)
CONSUMER_STORE_RETRIES = Counter(
    "arwx_consumer_store_retries_total", "Store writes the consumer retried (an outage pauses it; nothing is dropped)"
)
DEAD_LETTERS = Counter("arwx_dead_letters_total", "Log messages sent to the dead-letter table")
STORE_ERRORS = Counter("arwx_store_errors_total", "Store operations that failed", ["op"])

HTTP_IN_FLIGHT = Gauge("arwx_http_requests_in_flight", "HTTP requests being handled")
INGEST_IN_FLIGHT_BYTES = Gauge(
    "arwx_gateway_inflight_bytes", "Ingest request bytes admitted and not yet answered (bounded by max_inflight_bytes)"
)
INGEST_THROTTLED = Counter(
    "arwx_gateway_throttled_requests_total", "Ingest requests refused with 429 because max_inflight_bytes was reached"
)
EMBEDDED_LOG_PENDING_BYTES = Gauge(
    "arwx_embedded_log_pending_bytes", "Bytes waiting for the embedded log's writer to commit (sampled at scrape)"
)
EMBEDDED_LOG_BACKLOG = Gauge(
    "arwx_embedded_log_backlog_messages",
    "Messages in the embedded log not yet committed by the consumer (sampled at scrape)",
)
BLOB_GC_DELETED = Counter(
    "arwx_blob_gc_deleted_total", "What blob garbage collection deleted: refs, blobs, temporaries", ["what"]
)
BLOB_GC_DELETED_BYTES = Counter("arwx_blob_gc_deleted_bytes_total", "Bytes of the blobs garbage collection deleted")
BLOB_GC_RUNS = Counter("arwx_blob_gc_runs_total", "Blob garbage collections by result (ok, failed)", ["result"])
READY = Gauge("arwx_ready", "1 when this process's log and store answer (what /ready says), else 0")
STORE_SECONDS = Histogram(
    "arwx_store_operation_duration_seconds",
    "Store call latency by operation (query, command, insert)",
    ["op"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
