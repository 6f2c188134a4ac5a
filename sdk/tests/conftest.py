"""Make the SDK importable without installing it; shared fixtures."""

from __future__ import annotations

import logging
import os
import sys

import pytest

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK not in sys.path:
    sys.path.insert(0, SDK)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up a developer's ARWANDB_*/WANDB_* settings."""
    for k in list(os.environ):
        if k.startswith(("ARWANDB_", "WANDB_")):
            monkeypatch.delenv(k, raising=False)
    logging.getLogger("arwandb").setLevel(logging.INFO)
