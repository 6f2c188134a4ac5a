"""Shared fixtures.

chDB allows one data path per process, so every in-process server in a test
session shares one store directory; tests stay apart by organization (each
gets a fresh org and key), which is also what tenancy guarantees in production.
Kill -9 and restart tests use real ``arwx server`` processes instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from tests.helpers import Api, ServerThread  # noqa: E402

pytest_plugins = ["tests.conftest_kafka", "tests.conftest_s3"]


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("arwx-data")


@pytest.fixture(scope="session")
def embedded(store_dir: Path):
    """One embedded server (SQLite log + chDB) for the session."""
    srv = ServerThread(data_dir=store_dir)
    yield srv
    srv.stop()


@pytest.fixture
def api(embedded: ServerThread) -> Api:
    """A client with a key of a fresh organization on the embedded server."""
    return Api(embedded.url, embedded.new_org_key())
