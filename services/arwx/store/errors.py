"""What a store failure means: an outage (pause and retry) or data the store refuses.

Invariant: only an error that names the data as the cause is ``StoreRejected``;
a full disk, a read-only store, an I/O or memory failure, a timeout, a lost
connection is ``StoreUnavailable``. The consumer dead-letters only
``StoreRejected`` and pauses on everything else, so an error nobody
classified can stall ingest (visibly) but never drop acknowledged data.

ClickHouse names its errors by a stable numeric code (``Code: 243.`` in the
message of chDB and of the server alike); the code decides, not whether the
store still answers a ping (chDB answers ``SELECT 1`` with a full disk).
"""

from __future__ import annotations

import re

from arwx.store.base import StoreRejected, StoreUnavailable

# The data itself is wrong: a retry of the same rows fails the same way.
REJECTED_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
})

# The store cannot do the work right now; the same call can succeed later.
OUTAGE_CODES = frozenset({
    3,    # UNEXPECTED_END_OF_FILE
    32,   # ATTEMPT_TO_READ_AFTER_EOF
    74,   # CANNOT_READ_FROM_FILE_DESCRIPTOR
    75,   # CANNOT_WRITE_TO_FILE_DESCRIPTOR
    76,   # CANNOT_OPEN_FILE
    77,   # CANNOT_CLOSE_FILE
    107,  # FILE_DOESNT_EXIST
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    173,  # CANNOT_ALLOCATE_MEMORY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION (I/O, filesystem)
    1001,  # STD_EXCEPTION (std::filesystem errors: no space, read-only file system)
})

_CODE = re.compile(r"\bCode: (\d+)\b")
# An OS error inside any message: ENOSPC, EROFS, EIO, EDQUOT and the like.
_OS_TROUBLE = re.compile(
    r"No space left|Read-only file system|Input/output error|Disk quota exceeded|errno: (?:5|28|30|122)\b", re.I
)


def error_code(message: str) -> int | None:
    """The ClickHouse error code named in ``message``, if any."""
    m = _CODE.search(message)
    return int(m.group(1)) if m else None


def classify(e: Exception) -> Exception:
    """``e`` as ``StoreUnavailable`` or ``StoreRejected`` when its code says which; else ``e`` itself
    (a bug or a schema mismatch: the consumer still pauses on it, an HTTP request answers 500)."""
    if isinstance(e, (StoreUnavailable, StoreRejected)):
        return e
    message = str(e)
    code = error_code(message)
    if code in OUTAGE_CODES or _OS_TROUBLE.search(message):
        return StoreUnavailable(message)
    if code in REJECTED_CODES:
        return StoreRejected(message)
    return e
