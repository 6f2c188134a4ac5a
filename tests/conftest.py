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


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/postgres_server.py). Fails, never skips,
    when it cannot start: the distributed catalog is part of the product."""
    from tests.postgres_server import shared

    try:
        return shared()
    except Exception as e:  # noqa: BLE001 - say why and fail
        pytest.fail(f"cannot start PostgreSQL for the catalog tests: {type(e).__name__}: {e}", pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog database of each kind ("" is SQLite in ``tmp_path``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("postgres").new_database()
