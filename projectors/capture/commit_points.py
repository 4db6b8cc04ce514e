"""Which records of a batch Debezium may mark processed: COPY and other multi-row statements write
many rows at one LSN, and Debezium (3.6) resumes *after* the last committed offset's LSN, so a batch
marks only up to the last record followed by a higher LSN (:func:`committable`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_LSN_KEYS = ("lsn", "lsn_proc", "lsn_commit")


def source_offset_lsn(record: Any) -> int:
    """The highest LSN in the record's Debezium source offset (heartbeats included), 0 if none."""
    try:
        offset = record.sourceRecord().sourceOffset()
    except Exception:  # not an embedded-engine record (tests) or no source record
        return 0
    best = 0
    for key in _LSN_KEYS:
        value = offset.get(key)
        if value is not None:
            best = max(best, int(value))
    return best


def source_offset(record: Any) -> Mapping[str, Any]:
    """The record's Debezium source offset (``lsn``, ``messageType``, ``txId`` ...), empty if none."""
    try:
        return {str(k): v for k, v in dict(record.sourceRecord().sourceOffset()).items()}
    except Exception:  # not an embedded-engine record (tests) or no source record
        return {}


# Offsets taken inside a transaction, at a change event: the next events may share its LSN.
_INSIDE_A_TRANSACTION = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE"})


def committable(offsets: Sequence[Mapping[str, Any]]) -> int:
    """How many records, from the start of a batch whose source offsets are ``offsets``, Debezium may
    mark processed without a restart losing an event: all up to the last record whose offset is not
    inside a transaction (a commit, a heartbeat after one, a snapshot read), or whose LSN is below
    the batch's last LSN (every event at its LSN was published in this batch). The trailing events
    that share the last LSN stay unmarked: more events at that LSN may follow in the next batch."""
    last_lsn: int | None = None
    for i in range(len(offsets) - 1, -1, -1):
        offset = offsets[i]
        if str(offset.get("messageType")) not in _INSIDE_A_TRANSACTION or offset.get("snapshot"):
            return i + 1
        try:
            lsn = int(offset["lsn"])
        except (KeyError, TypeError, ValueError):
            continue
        if last_lsn is None:
            last_lsn = lsn
        elif lsn < last_lsn:
            return i + 1
    return 0


def is_streamed(record: Any) -> bool:
    """Whether the record was streamed from the slot (its source offset is not a snapshot's)."""
    try:
        offset = record.sourceRecord().sourceOffset()
    except Exception:
        return False
    return offset.get("snapshot") is None and offset.get("last_snapshot_record") is None
