"""Pytest plugin: a real S3-compatible server (SeaweedFS, ``tests/seaweedfs.py``).

Fixture ``seaweed`` (session): one server for the session, its bucket made.
It never skips: a server that cannot be built or started fails the tests
that need it, since the distributed blob store is only tested against it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.seaweedfs import SeaweedS3

__all__ = ["seaweed"]


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    server = SeaweedS3()
    try:
        server.start()
    except Exception as e:  # noqa: BLE001 - report any failure to start as the test failure it is
        pytest.fail(f"cannot start SeaweedFS ({type(e).__name__}: {e})", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
