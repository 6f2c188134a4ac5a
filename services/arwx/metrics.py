"""Service metrics (Prometheus), served at ``/metrics`` by every service."""

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
CONSUMER_LAG = Gauge("arwx_consumer_lag_messages", "Log messages not yet committed by the consumer")
DEAD_LETTERS = Counter("arwx_dead_letters_total", "Log messages sent to the dead-letter table")
STORE_ERRORS = Counter("arwx_store_errors_total", "Store operations that failed", ["op"])
