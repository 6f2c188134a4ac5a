"""The catalog's tables, as SQLAlchemy Core metadata: one schema for SQLite and PostgreSQL.

Invariant: this module describes the schema the newest migration
(``migrations/versions``) produces; queries are written against it. A change
here without a migration is a bug (``tests/test_catalog_contract.py`` compares
the migrated database with this metadata).

Times are milliseconds since the epoch (BigInteger) so both databases store
and compare them the same way. Ids are strings chosen by the server (orgs,
keys) or the client (runs).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Counters other processes poll to learn that something changed ("keys": any
# key created or revoked), one-time markers ("legacy_clickhouse_import"), and
# facts ("paired_store": the store_id of the ClickHouse store this catalog goes
# with, in ``text``; see arwx/datadir.py).
catalog_state = Table(
    "catalog_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("text", Text, nullable=True),
)

orgs = Table(
    "orgs",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "name"),
)

# Only the SHA-256 of a secret is stored; the hash is the lookup key. ``scopes``:
# space-separated names of ``arwx.tenancy.SCOPES`` (migration 0006).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("org", String(64), ForeignKey("orgs.org"), nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("scopes", String(128), nullable=False),
    # Set: the key may write this one run only (a Wild run's command; migration 0008).
    Column("run_id", String(256), nullable=True),
    Index(None, "org"),
)

# A run id is unique within its org. ``version`` grows on every change and is
# the ClickHouse mirror's ReplacingMergeTree version (see catalog/mirror.py).
runs = Table(
    "runs",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("config", JSON, nullable=False),
    Column("writer_ids", JSON, nullable=False),
    Column("fingerprint", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("version", BigInteger, nullable=False),
    # Run lifecycle (migration 0009): edits, the last heartbeat of any writer
    # (NULL: its writers never sent one, so it is never judged crashed), soft delete.
    Column("tags", JSON, nullable=True),
    Column("notes", Text, nullable=True),
    Column("heartbeat_at", BigInteger, nullable=True),
    Column("deleted_at", BigInteger, nullable=True),
    # Rewind and fork (migration 0014; ``arwx/segments.py``). NULL on a run never
    # rewound nor forked: one attempt, stored under its own id from step 0.
    # ``attempts``: [{"attempt", "storage_id", "start_step", "created_at", "writers"}];
    # ``segments``: [[storage_id, step_lo, step_hi or null], ...], the visible history.
    Column("attempts", JSON, nullable=True),
    Column("segments", JSON, nullable=True),
    Column("forked_from", String(256), nullable=True),
    Column("fork_step", BigInteger, nullable=True),
    Index(None, "org", "project", "created_at"),
    Index(None, "status", "heartbeat_at"),
)

# What each writer says it sent, reported at finish: a row per writer, so
# ranks finishing at once never overwrite each other.
run_writers = Table(
    "run_writers",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("writer_id", String(256), primary_key=True),
    Column("sent", BigInteger, nullable=False),
    Column("reported_at", BigInteger, nullable=False),
)

# -- Files and artifacts (migration 0003) ------------------------------------------------------

# A file the org registered: external (``uri`` names where it lives; arwx has
# only its SHA-256 and size) or uploaded (bytes in the blob store, ``uri``
# NULL). The id is derived from what is registered, so registering the same
# file twice is the same row.
files = Table(
    "files",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("file_id", String(40), primary_key=True),
    Column("name", Text, nullable=False),
    Column("uri", Text, nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index(None, "org", "sha256"),
)

# An artifact is (org, project, name); its type is fixed by the first log.
artifacts = Table(
    "artifacts",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("project", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "org", "name"),
    Index(None, "org", "type"),
)

# A version is the SHA-256 of its canonical manifest (``digest``): one digest is
# one version per artifact (the unique constraint), and numbers have no gaps
# because they are taken as max + 1 under the artifact's row lock.
artifact_versions = Table(
    "artifact_versions",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("project", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("produced_by", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    ForeignKeyConstraint(
        ["org", "project", "name"], ["artifacts.org", "artifacts.project", "artifacts.name"],
        name="fk_artifact_versions_org_artifacts",
    ),
    UniqueConstraint("org", "project", "name", "digest"),
    Index(None, "org", "produced_by"),
)

# Where each ref points now; moved only under the artifact's row lock.
artifact_refs = Table(
    "artifact_refs",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("project", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("ref", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    ForeignKeyConstraint(
        ["org", "project", "name"], ["artifacts.org", "artifacts.project", "artifacts.name"],
        name="fk_artifact_refs_org_artifacts",
    ),
)

# Every move of every ref, append-only: who (key id), when, from where to where, why.
artifact_ref_log = Table(
    "artifact_ref_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org", String(64), nullable=False),
    Column("project", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("ref", String(128), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=False),
    Column("reason", Text, nullable=True),
    Column("moved_at", BigInteger, nullable=False),
    Column("moved_by", String(64), nullable=False),
    Index(None, "org", "project", "name", "id"),
)

# The MLflow adapter's state (arwx/compat/mlflow/state.py): what MLflow has and
# arwx's runs do not. Experiment ids are per-org integers ("0" is Default).
mlflow_experiments = Table(
    "mlflow_experiments",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("experiment_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("tags", JSON, nullable=False),
    Index(None, "org", "name", unique=True),
)

# One row per MLflow run (an arwx run of the same id); its writer "mlflow"'s
# seqs are in ``writer_seqs`` (migration 0006 moved them there).
mlflow_runs = Table(
    "mlflow_runs",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("experiment_id", BigInteger, nullable=False),
    Column("run_name", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("outputs", JSON, nullable=True),  # [{model_id, step}]: models the run logged (migration 0013)
    Index(None, "org", "experiment_id"),
)

mlflow_latest_metrics = Table(
    "mlflow_latest_metrics",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", Float, nullable=True),  # NULL: NaN
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
)

mlflow_artifacts = Table(
    "mlflow_artifacts",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("sha", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
)

# MLflow 3's logged models (migration 0013): a model of an experiment, with its
# own artifacts (kept in mlflow_artifacts under the model id) and params/tags.
mlflow_logged_models = Table(
    "mlflow_logged_models",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("model_id", String(64), primary_key=True),
    Column("experiment_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("model_type", Text, nullable=True),
    Column("source_run_id", String(256), nullable=True),
    Column("status", String(32), nullable=False),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("params", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Index(None, "org", "experiment_id"),
)

# The model registry: a registered model is an arwx artifact (project
# MLFLOW_REGISTRY_PROJECT, type "model"); each MLflow version names the arwx
# version with its files (several MLflow versions may share one); aliases and
# stages are mirrored as arwx refs.
mlflow_registered_models = Table(
    "mlflow_registered_models",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("artifact", String(256), nullable=False),  # the arwx artifact's name (kept across renames)
    Column("description", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("aliases", JSON, nullable=False),  # alias -> MLflow version number
)

mlflow_model_versions = Table(
    "mlflow_model_versions",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("source", Text, nullable=False),
    Column("storage_location", Text, nullable=False),
    Column("run_id", String(256), nullable=True),
    Column("model_id", String(64), nullable=True),
    Column("description", Text, nullable=False),
    Column("current_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("arwx_version", BigInteger, nullable=True),  # the arwx artifact version of its files
)

# --- Seqs reserved for writers whose clients send none (migration 0006,
# arwx/ingest/reserved_seqs.py): a writer's next unreserved seq, and each
# request's reservation by its digest, so a retry gets the same seqs.
writer_seqs = Table(
    "writer_seqs",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("writer_id", String(256), primary_key=True),
    Column("next_seq", BigInteger, nullable=False),
)

writer_requests = Table(
    "writer_requests",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("writer_id", String(256), primary_key=True),
    Column("digest", String(300), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("n", BigInteger, nullable=False),
)

# --- The control plane (migration 0005): projects and goals, sessions,
# experiments, decisions, and the responses kept for Idempotency-Key.

# A project is created by POST /v1/projects or by the first run that names it.
# The goal (objective_metric, lower_is_better, target) is optional until set.
projects = Table(
    "projects",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("objective_metric", Text, nullable=True),
    Column("lower_is_better", Boolean, nullable=False),
    Column("target", Float, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# ``seq`` orders rows of a table by creation in one database (two rows made in
# the same millisecond still have an order: "the newest session" is exact);
# ``id`` is what clients see, random so ids say nothing about volume.
sessions = Table(
    "sessions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("org", String(64), nullable=False),
    Column("id", String(32), nullable=False),
    Column("project", String(128), nullable=False),
    Column("tag", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    ForeignKeyConstraint(["org", "project"], ["projects.org", "projects.name"]),
    UniqueConstraint("org", "id"),
    Index(None, "org", "project", "seq"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("org", String(64), nullable=False),
    Column("id", String(32), nullable=False),
    Column("project", String(128), nullable=False),
    Column("session_id", String(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("commit", String(128), nullable=True),
    Column("parent_commit", String(128), nullable=True),
    # The stored diff text is a blob; over the cap it is a marker saying so.
    Column("diff_sha", String(64), nullable=True),
    Column("diff_size", BigInteger, nullable=False),
    Column("diff_truncated", Boolean, nullable=False),
    Column("config", JSON, nullable=False),
    Column("repro_key", String(64), nullable=False),
    # The code snapshot: {path: {sha256, size, mode}}, every sha a blob of the org.
    Column("tree", JSON, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    ForeignKeyConstraint(["org", "session_id"], ["sessions.org", "sessions.id"]),
    UniqueConstraint("org", "id"),
    Index(None, "org", "project", "seq"),
    Index(None, "org", "session_id", "seq"),
)

# Every decision is kept; an experiment's current one is its highest ``seq``.
decisions = Table(
    "decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("org", String(64), nullable=False),
    Column("experiment_id", String(32), nullable=False),
    Column("project", String(128), nullable=False),
    Column("session_id", String(32), nullable=False),
    Column("status", String(8), nullable=False),
    Column("score", Float, nullable=True),
    Column("metric", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    ForeignKeyConstraint(["org", "experiment_id"], ["experiments.org", "experiments.id"]),
    Index(None, "org", "experiment_id", "seq"),
    Index(None, "org", "project", "seq"),
)

# One row per (org, Idempotency-Key): the request's fingerprint and, once it
# is answered, the answer to replay. ``status`` 0 means still being answered.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("response", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# -- Accounts and sign-in (migration 0007) -----------------------------------------------------

# A person who signs in to the dashboard. ``email`` is stored lower-cased and
# is the sign-in name; ``password_hash`` is a scrypt hash with its parameters
# (``arwx/accounts/passwords.py``), NULL until a password is set.
users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# Which organizations a user belongs to, and as what (admin, member, viewer).
memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(64), ForeignKey("users.user_id"), primary_key=True),
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "org"),
)

# A signed-in browser. Only the SHA-256 of the cookie's token is stored; ``org``
# is the organization the session currently acts in.
login_sessions = Table(
    "login_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.user_id"), nullable=False),
    Column("org", String(64), ForeignKey("orgs.org"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "user_id"),
    Index(None, "expires_at"),
)

# One-time tokens that set a password: the first account of a new server
# (``user_id`` NULL: redeeming names the email and makes an admin of ``org``),
# or an account created without a password. Stored hashed, single use, expiring.
password_tokens = Table(
    "password_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.user_id"), nullable=True),
    Column("org", String(64), ForeignKey("orgs.org"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

# Failed sign-ins, one row each, shared by every process of the server so a limit
# holds however many gateways there are (``arwx/accounts/ratelimit.py``). ``key_hash``
# is the SHA-256 of ``"email:…"`` or ``"addr:…"`` (people type passwords into the
# email field: it is never stored as typed). Rows older than the window are deleted.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index(None, "key_hash", "at"),
    Index(None, "at"),
)

# --- The ml-workbench adapter (migration 0006, arwx/compat/workbench/state.py).
# An experiment is an arwx project (``project``, unique in the org); ``run_id``
# its current run (where metrics sent to the experiment's id go); ``extra`` the
# run-tracking fields the document names (modelType, framework, final_metrics...).
# ``deleted_at``: deleted experiments are hidden, never erased.
workbench_experiments = Table(
    "workbench_experiments",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("project", String(128), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("pinned", Boolean, nullable=False),
    Column("is_public", Boolean, nullable=False),
    Column("shared_with", JSON, nullable=False),
    Column("run_id", String(256), nullable=True),
    Column("extra", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger, nullable=True),
    Index(None, "org", "name"),
    Index(None, "org", "project", unique=True),
)

# An artifact registered with an experiment: by ``s3_key`` (bytes elsewhere) or
# uploaded (bytes in the blob store under ``sha256``). One row per path.
workbench_artifacts = Table(
    "workbench_artifacts",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("experiment_id", String(64), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("run_id", String(256), nullable=True),
    Column("name", Text, nullable=False),
    Column("type", String(32), nullable=False),
    Column("s3_key", Text, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("content_type", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# --- Wild V2 sweeps and runs (migration 0008, arwx/compat/wild): runs created with a
# shell command, executed by a separate runner process (arwx/runner), audited.

# A sweep is an arwx project (``project``); its name is unique in the org
# ("create or reuse": a second create with the name returns the first sweep).
wild_sweeps = Table(
    "wild_sweeps",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("goal", Text, nullable=False),
    Column("project", String(128), nullable=False),
    Column("chat_session_id", Text, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("org", "name"),
    Index(None, "org", "created_at"),
)

# One row per Wild run (an arwx run of the same id in the sweep's project).
# ``status`` moves created → queued → running → finished | failed | stopped | lost
# only by conditional UPDATEs (``WHERE status = <expected>``), so two runners
# never claim one run and a final status is never overwritten. ``key_id``: the
# per-run write key the runner's command got, revoked when the run ends.
wild_runs = Table(
    "wild_runs",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("sweep_id", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("chat_session_id", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("runner_id", String(64), nullable=True),
    Column("key_id", String(64), nullable=True),
    Column("stop_requested", Boolean, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("queued_at", BigInteger, nullable=True),
    Column("started_at", BigInteger, nullable=True),
    Column("ended_at", BigInteger, nullable=True),
    ForeignKeyConstraint(["org", "sweep_id"], ["wild_sweeps.org", "wild_sweeps.id"]),
    Index(None, "org", "sweep_id", "created_at"),
    Index(None, "org", "status", "queued_at"),
    Index(None, "status", "runner_id"),
)

# Every runner that has reported: its last heartbeat is what makes its runs ``lost``.
wild_runners = Table(
    "wild_runners",
    metadata,
    Column("org", String(64), ForeignKey("orgs.org"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("host", Text, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("last_heartbeat_at", BigInteger, nullable=False),
)

# Who (key, chat_session_id) did what to which sweep or run, and when; append-only.
wild_audit = Table(
    "wild_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("org", String(64), nullable=False),
    Column("sweep_id", String(32), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("action", String(32), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("chat_session_id", Text, nullable=True),
    Column("detail", JSON, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index(None, "org", "run_id", "seq"),
    Index(None, "org", "sweep_id", "seq"),
)

# A run's stdout and stderr as the runner uploaded them: chunks at byte offsets,
# capped per stream (``wild_log_cap_bytes``).
wild_run_logs = Table(
    "wild_run_logs",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("stream", String(8), primary_key=True),
    Column("pos", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# --- Compatibility adapters (migration 0010): files attached to runs (chachaml's
# run artifacts, ml-service's log-artifact) and chachaml's model versions.

# A run's file by name: its bytes are blob ``sha256`` of the org. Logging the
# same name again replaces the row (the bytes stay, content-addressed).
compat_run_files = Table(
    "compat_run_files",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# What chachaml knows of a model version that an arwx artifact version does not:
# the run and artifact it came from, its description and its stage. The model
# is the arwx artifact (org, project, model); ``version`` is its version number.
# The ``production`` stage is the artifact's ref of that name (the only truth
# for it); a row whose stage says ``production`` but whose version the ref has
# left reads as ``archived`` (demoted).
chachaml_model_versions = Table(
    "chachaml_model_versions",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("project", String(128), nullable=False),
    Column("run_id", String(256), nullable=False),
    Column("artifact", String(512), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)
