"""Poison messages go to the ``dead_letters`` table with their position and reason."""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from arwx.log.base import LogMessage
from arwx.store.base import Store

log = logging.getLogger(__name__)


async def dead_letter(store: Store, msg: LogMessage, reason: str) -> None:
    """Record a message that cannot be decoded or written. Keyed by position,
    so recording the same message again after a replay collapses."""
    log.error("dead-lettered %s/%d@%d: %s", msg.topic, msg.partition, msg.offset, reason)
    now_ms = int(time.time() * 1000)
    table = pa.table(
        {
            "log_topic": pa.array([msg.topic]),
            "log_partition": pa.array([msg.partition], pa.uint32()),
            "log_offset": pa.array([msg.offset], pa.uint64()),
            "reason": pa.array([reason[:2000]]),
            "payload": pa.array([msg.payload], pa.binary()),
            "dead_at": pa.array([now_ms], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    await store.insert("dead_letters", table)
