"""Pytest plugin: a real Kafka broker for tests marked ``kafka``.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.conftest_kafka"]``.

Fixtures:

- ``kafka_bootstrap`` (session): ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a
  broker started once per session by ``tests/kafka_broker.py``.
- ``kafka_private_broker`` (function): a fresh ``KafkaBroker`` of the test's
  own, for fault tests (``kill9()``, ``restart()``); ignores the env var.

If a broker cannot be started the test is skipped, saying why, unless
``ARWX_REQUIRE_KAFKA=1``, which turns that into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kafka_broker import KafkaBroker

__all__ = ["kafka_bootstrap", "kafka_private_broker"]


def _start_or_skip() -> KafkaBroker:
    broker = KafkaBroker()
    try:
        return broker.start()
    except Exception as e:  # noqa: BLE001 - any failure to start means "no broker here"
        reason = f"cannot start a Kafka broker ({type(e).__name__}: {e})"
        if os.environ.get("ARWX_REQUIRE_KAFKA") == "1":
            pytest.fail(f"ARWX_REQUIRE_KAFKA=1 but {reason}", pytrace=False)
        pytest.skip(reason + "; set KAFKA_BOOTSTRAP_SERVERS to use an existing broker")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker, ``host:port[,host:port]``."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    broker = _start_or_skip()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_private_broker() -> Iterator[KafkaBroker]:
    """A broker only this test uses, so it may kill and restart it."""
    broker = _start_or_skip()
    try:
        yield broker
    finally:
        broker.stop()
