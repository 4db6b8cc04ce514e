"""Capture's line in `projectors status`: the slot's WAL and when capture last confirmed a position."""

from __future__ import annotations

import time

from projectors.capture.state_store import BrokerState
from projectors.capture.wal import describe_keep_limit, human_bytes, slot_wal, wal_keep_limit
from projectors.db.migrate import connect
from projectors.errors import RetriableError
from projectors.settings import Settings


def capture_lines(settings: Settings) -> list[str]:
    """`projectors status`: the slot's WAL and when capture last confirmed a position (its record
    on the state topic)."""
    slot = settings.capture.slot_name
    with connect(settings.pg, autocommit=True) as conn:
        wal = slot_wal(conn, slot)
        limit = wal_keep_limit(conn)
    broker = BrokerState(settings, timeout_s=10)
    try:
        broker.ensure_topic()
        state = broker.read()
    except RetriableError as exc:
        confirmed = f"unknown ({exc})"
    else:
        at = None if state is None else state.written_at
        confirmed = "never" if at is None else f"{time.time() - at:.0f}s ago"
    finally:
        broker.close()
    if not wal.exists:
        return [f"capture: slot {slot} does not exist; position last confirmed {confirmed}"]
    safe = "unbounded" if wal.safe_wal_size is None else human_bytes(wal.safe_wal_size)
    return [
        f"capture: slot {slot} {'active' if wal.active else 'INACTIVE'}, wal_status {wal.wal_status}, "
        f"retained WAL {human_bytes(wal.retained_bytes or 0)}, safe_wal_size {safe}, "
        f"position last confirmed {confirmed}",
        f"    {describe_keep_limit(limit)}",
    ]
