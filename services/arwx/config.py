"""Every setting, once: its flag, its ``ARWX_*`` variable, its default, its check.

The CLI builds its flags from ``OPTIONS``; ``docs/configuration.md`` is the
same table (a test keeps them in agreement). A flag wins over the variable,
which wins over the default. Bad values stop the start with a clear error.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

# Twice the blob store's REFRESH_S (arwx.blobs.base): a client has at least that much again
# between being told a blob is present and registering it.
MIN_GC_GRACE_S = 1200.0


class ConfigError(ValueError):
    """A setting has a value that cannot work."""


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: object
    help: str

    @property
    def env(self) -> str:
        return "ARWX_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _port(v: int) -> int:
    if not 0 <= v <= 65535:
        raise ConfigError(f"port {v} is not in 0..65535")
    return v


OPTIONS: list[Option] = [
    Option("host", str, "127.0.0.1", "address to listen on"),
    Option("port", int, 8090, "HTTP port (0: pick a free one)"),
    Option("data_dir", str, "~/.arwx", "embedded mode: where the log and the chDB store live"),
    Option("kafka_bootstrap", str, "", "Kafka bootstrap servers; set: the log is Kafka, else the embedded log"),
    Option("kafka_topic", str, "arwx.points", "Kafka topic of point messages"),
    Option("kafka_partitions", int, 12, "partitions when the topic is created"),
    Option("kafka_replication", int, 1, "replication factor when the topic is created"),
    Option("consumer_group", str, "arwx-consumer", "consumer group id"),
    Option("clickhouse_url", str, "", "ClickHouse server, e.g. http://user:pass@host:8123/db; else chDB in data_dir"),
    Option(
        "blobs_url", str, "",
        "blob store: s3://bucket/prefix (credentials and endpoint from the AWS_* variables); else a directory in data_dir",
    ),
    Option("catalog_url", str, "", "catalog of orgs, keys and runs: postgresql://user:pass@host/db; else SQLite in data_dir"),
    Option("max_body_bytes", int, 16 << 20, "largest JSON ingest body (bigger: 413; use the stream)"),
    Option("max_line_bytes", int, 1 << 20, "largest NDJSON line on the stream (bigger: that line is rejected)"),
    Option("key_refresh_s", float, 0.25, "how often a process asks the catalog whether keys changed (revocation bound)"),
    Option("send_timeout_s", float, 10.0, "bound on a log append before answering 503"),
    Option("log_retention_s", float, 3600.0, "embedded log: how long consumed messages are kept (what --rebuild-store can replay)"),
    Option("max_inflight_bytes", int, 256 << 20, "bound on ingest bytes received and not yet answered in a gateway (over it: 429 + Retry-After)"),
    Option("max_inflight_org_share", float, 0.5, "share of max_inflight_bytes one organization may hold (at least one max_body_bytes)"),
    Option("body_timeout_s", float, 120.0, "bound on receiving a whole request body (past it: 408)"),
    Option("body_idle_s", float, 30.0, "bound on waiting for the next bytes of any body, streams included (past it: 408)"),
    Option("log_level", str, "info", "debug, info, warning or error"),
    Option("log_format", str, "text", "text, or json: one JSON object per line"),
    Option("metrics_port", int, 0, "ops listener: /metrics, /ready, /health without a key (0: off)"),
    Option("metrics_host", str, "127.0.0.1", "address of the ops listener"),
    Option("session_ttl_s", float, 7 * 86400.0, "how long a dashboard sign-in lasts before it expires"),
    Option("password_token_ttl_s", float, 86400.0, "how long a one-time set-password link stays valid"),
    Option("login_window_s", float, 900.0, "window over which failed sign-ins are counted"),
    Option("login_account_failures", int, 10, "failed sign-ins for one email within login_window_s before 429"),
    Option("login_address_failures", int, 50, "failed sign-ins from one client address within login_window_s before 429"),
    Option("wild_lost_after_s", float, 60.0, "Wild V2: a runner silent this long has its running runs marked lost"),
    Option("wild_log_cap_bytes", int, 8 << 20, "Wild V2: bytes of a run's stdout, and of its stderr, the server keeps (the rest is dropped)"),
    Option(
        "run_crash_after_s", float, 300.0,
        "a running run whose writers sent no heartbeat for this long becomes crashed (a heartbeat brings it back)",
    ),
    Option(
        "blob_gc_interval_s", float, 0.0,
        "seconds between blob garbage collections in each query service (0: never; `arwx blobs gc` runs one)",
    ),
    Option(
        "blob_gc_grace_s", float, 86400.0,
        "blob garbage collection keeps anything used more recently than this (at least 1200)",
    ),
    # `arwx runner` only (RUNNER_OPTIONS): the process that executes Wild V2 runs (docs/runner.md).
    Option("runner_server", str, "http://127.0.0.1:8090", "arwx runner: the arwx server it takes runs from"),
    Option("runner_key", str, "", "arwx runner: its API key, holding the launch scope (prefer the variable to the flag)"),
    Option("runner_root", str, "~/.arwx-runner", "arwx runner: each run gets a fresh working directory under it"),
    Option("runner_id", str, "", "arwx runner: its name on the server (default: host name and a random suffix)"),
    Option("runner_concurrency", int, 1, "arwx runner: most commands running at once"),
    Option("runner_max_wall_s", float, 86400.0, "arwx runner: a command running longer is stopped and its run failed"),
    Option("runner_stop_grace_s", float, 10.0, "arwx runner: between SIGTERM and SIGKILL to a stopped run's process group"),
    Option("runner_heartbeat_s", float, 5.0, "arwx runner: seconds between heartbeats (keep well under wild_lost_after_s)"),
    Option("runner_poll_s", float, 1.0, "arwx runner: seconds between looks for queued runs while a slot is free"),
    Option("runner_log_cap_bytes", int, 64 << 20, "arwx runner: bytes of a run's stdout, and of its stderr, kept on disk"),
]

#: Settings of ``arwx runner`` alone: not flags of the server's subcommands.
RUNNER_OPTIONS = frozenset(o.name for o in OPTIONS if o.name.startswith("runner_"))

_ALIASES = {
    "kafka_bootstrap": ["--kafka"], "clickhouse_url": ["--clickhouse"], "blobs_url": ["--blobs"],
    "catalog_url": ["--catalog"], "runner_server": ["--server"], "runner_root": ["--root"],
    "runner_concurrency": ["--concurrency"],
}


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    data_dir: str
    kafka_bootstrap: str
    kafka_topic: str
    kafka_partitions: int
    kafka_replication: int
    consumer_group: str
    clickhouse_url: str
    blobs_url: str
    catalog_url: str
    max_body_bytes: int
    max_line_bytes: int
    key_refresh_s: float
    send_timeout_s: float
    log_retention_s: float
    max_inflight_bytes: int
    max_inflight_org_share: float
    body_timeout_s: float
    body_idle_s: float
    log_level: str
    log_format: str
    metrics_port: int
    metrics_host: str
    session_ttl_s: float
    password_token_ttl_s: float
    login_window_s: float
    login_account_failures: int
    login_address_failures: int
    run_crash_after_s: float
    blob_gc_interval_s: float
    blob_gc_grace_s: float
    wild_lost_after_s: float
    wild_log_cap_bytes: int
    runner_server: str
    runner_key: str
    runner_root: str
    runner_id: str
    runner_concurrency: int
    runner_max_wall_s: float
    runner_stop_grace_s: float
    runner_heartbeat_s: float
    runner_poll_s: float
    runner_log_cap_bytes: int

    def validate(self) -> Settings:
        _port(self.port)
        _port(self.metrics_port)
        if self.metrics_port and self.metrics_port == self.port:
            raise ConfigError(f"metrics_port {self.metrics_port} is the API port; the ops listener needs its own")
        if self.kafka_partitions < 1:
            raise ConfigError("kafka_partitions must be at least 1")
        if self.max_body_bytes < 1024 or self.max_line_bytes < 1024:
            raise ConfigError("max_body_bytes and max_line_bytes must be at least 1024")
        if self.key_refresh_s <= 0 or self.send_timeout_s <= 0:
            raise ConfigError("key_refresh_s and send_timeout_s must be positive")
        if self.run_crash_after_s <= 0:
            raise ConfigError("run_crash_after_s must be positive")
        if self.blob_gc_interval_s < 0:
            raise ConfigError("blob_gc_interval_s must not be negative (0: no periodic collection)")
        if self.blob_gc_grace_s < MIN_GC_GRACE_S:
            raise ConfigError(
                f"blob_gc_grace_s must be at least {MIN_GC_GRACE_S:g}: a blob a client was told is present "
                "must outlive the time it takes to name it"
            )
        if self.log_retention_s < 0:
            raise ConfigError("log_retention_s must not be negative")
        if self.body_timeout_s <= 0 or self.body_idle_s <= 0:
            raise ConfigError("body_timeout_s and body_idle_s must be positive")
        if not 0 < self.max_inflight_org_share <= 1:
            raise ConfigError(f"max_inflight_org_share {self.max_inflight_org_share} is not in (0, 1]")
        if self.session_ttl_s <= 0 or self.password_token_ttl_s <= 0 or self.login_window_s <= 0:
            raise ConfigError("session_ttl_s, password_token_ttl_s and login_window_s must be positive")
        if self.login_account_failures < 1 or self.login_address_failures < 1:
            raise ConfigError("login_account_failures and login_address_failures must be at least 1")
        if self.wild_lost_after_s <= 0:
            raise ConfigError("wild_lost_after_s must be positive")
        if self.wild_log_cap_bytes < 0:
            raise ConfigError("wild_log_cap_bytes must not be negative")
        if self.runner_concurrency < 1:
            raise ConfigError("runner_concurrency must be at least 1")
        if min(self.runner_max_wall_s, self.runner_stop_grace_s, self.runner_heartbeat_s, self.runner_poll_s) <= 0:
            raise ConfigError("runner_max_wall_s, runner_stop_grace_s, runner_heartbeat_s and runner_poll_s must be positive")
        if self.runner_log_cap_bytes < 0:
            raise ConfigError("runner_log_cap_bytes must not be negative")
        if not self.runner_server.startswith(("http://", "https://")):
            raise ConfigError(f"runner_server {self.runner_server!r} must start with http:// or https://")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level {self.log_level!r} is not debug, info, warning or error")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format {self.log_format!r} is not text or json")
        if self.max_inflight_bytes < self.max_body_bytes:
            # Else a body the gateway accepts could never be admitted.
            raise ConfigError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least max_body_bytes ({self.max_body_bytes})"
            )
        if self.clickhouse_url and not self.clickhouse_url.startswith(("http://", "https://", "clickhouse://")):
            raise ConfigError(f"clickhouse_url {self.clickhouse_url!r} must start with http:// or https://")
        if self.blobs_url and not re.match(r"^s3://[^/]+(/.*)?$", self.blobs_url):
            raise ConfigError(f"blobs_url {self.blobs_url!r} must be s3://bucket or s3://bucket/prefix")
        if self.catalog_url and not self.catalog_url.startswith(("postgresql://", "postgres://", "sqlite://")):
            raise ConfigError(f"catalog_url must start with postgresql:// (or sqlite://), not {self.catalog_url.split(':')[0]!r}")
        return self

    @property
    def max_inflight_org_bytes(self) -> int:
        """What one organization may hold in flight: its share, never less than one body."""
        return max(self.max_body_bytes, int(self.max_inflight_bytes * self.max_inflight_org_share))

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


def add_arguments(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add the flags for ``names`` (all by default); defaults come later from the env."""
    for opt in OPTIONS:
        if names is not None and opt.name not in names:
            continue
        parser.add_argument(
            opt.flag, *_ALIASES.get(opt.name, []), dest=opt.name, default=None, metavar=opt.type.__name__.upper(),
            help=f"{opt.help} (env {opt.env}, default {opt.default!r})",
        )


def resolve(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Settings:
    """Flags over ``ARWX_*`` variables over defaults, converted and validated."""
    env = os.environ if env is None else env
    values = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.name, None) if args is not None else None
        source = opt.flag
        if raw is None and opt.env in env:
            raw, source = env[opt.env], opt.env
        if raw is None:
            values[opt.name] = opt.default
            continue
        try:
            values[opt.name] = opt.type(raw)
        except ValueError:
            raise ConfigError(f"{source}={raw!r} is not a valid {opt.type.__name__}") from None
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values).validate()
