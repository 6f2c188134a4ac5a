"""Settings: flags over ARWX_* variables over defaults, validated, documented."""

from __future__ import annotations

import argparse
import re

import pytest

from arwx.cli import main
from arwx.config import OPTIONS, ConfigError, add_arguments, resolve
from tests.helpers import ROOT


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_flag_over_env_over_default() -> None:
    s = resolve(_args(), env={})
    assert (s.host, s.port, s.kafka_bootstrap) == ("127.0.0.1", 8090, "")
    s = resolve(_args(), env={"ARWX_PORT": "9000", "ARWX_KAFKA_BOOTSTRAP": "k:9092"})
    assert (s.port, s.kafka_bootstrap) == (9000, "k:9092")
    s = resolve(_args("--port", "9100", "--kafka", "x:1"), env={"ARWX_PORT": "9000"})
    assert (s.port, s.kafka_bootstrap) == (9100, "x:1")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARWX_PORT": "eighty"}, "ARWX_PORT='eighty' is not a valid int"),
        ({"ARWX_PORT": "70000"}, "not in 0..65535"),
        ({"ARWX_LOG_LEVEL": "loud"}, "log_level"),
        ({"ARWX_CLICKHOUSE_URL": "ftp://x"}, "must start with http"),
        ({"ARWX_KAFKA_PARTITIONS": "0"}, "at least 1"),
        ({"ARWX_BLOBS_URL": "/var/blobs"}, "must be s3://bucket"),
        ({"ARWX_BLOBS_URL": "s3:///prefix"}, "must be s3://bucket"),
    ],
)
def test_bad_values_are_named(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(_args(), env=env)


def test_cli_reports_bad_configuration(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARWX_PORT", "nope")
    assert main(["server"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_distributed_commands_need_kafka_and_clickhouse(capsys: pytest.CaptureFixture) -> None:
    for cmd in ("gateway", "consumer", "query"):
        assert main([cmd, "--kafka", "127.0.0.1:1"]) == 2
        assert "needs --kafka and --clickhouse" in capsys.readouterr().err


def test_gateway_and_query_need_a_shared_blob_store(capsys: pytest.CaptureFixture) -> None:
    for cmd in ("gateway", "query"):
        argv = [cmd, "--kafka", "127.0.0.1:1", "--clickhouse", "http://127.0.0.1:1", "--catalog", "postgresql://h/db"]
        assert main(argv) == 2
        assert "needs --blobs s3://" in capsys.readouterr().err


def test_gateway_and_query_need_a_shared_catalog(capsys: pytest.CaptureFixture) -> None:
    for cmd in ("gateway", "query"):
        assert main([cmd, "--kafka", "127.0.0.1:1", "--clickhouse", "http://127.0.0.1:1", "--blobs", "s3://b"]) == 2
        assert "needs --catalog postgresql://" in capsys.readouterr().err


def test_every_setting_is_in_the_reference_and_nothing_else() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(ARWX_[A-Z_]+)`", doc))
    assert documented == {o.env for o in OPTIONS}
    for o in OPTIONS:
        assert f"`{o.flag}`" in doc
