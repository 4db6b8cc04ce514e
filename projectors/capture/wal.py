"""What the replication slot costs the source database: the WAL it retains, and whether PostgreSQL
still keeps that WAL for it.

While capture does not confirm positions (stopped, stuck, lagging) the slot retains every WAL
segment from its ``restart_lsn``. With ``max_slot_wal_keep_size = -1`` (PostgreSQL's default) that
grows until the server's disk is full; with a bound, PostgreSQL invalidates the slot past it
(``wal_status = lost``) and the changes in between are gone for capture: a new snapshot position
and rebuilt projections (``projectors capture --recover-slot``) are the way back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

SLOT_WAL_QUERY = """
SELECT active,
       wal_status,
       safe_wal_size,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = %s
"""


@dataclass(frozen=True)
class SlotWal:
    """One slot, as PostgreSQL sees it now."""

    slot: str
    exists: bool
    active: bool = False
    wal_status: str = ""  # reserved, extended, unreserved, lost (PostgreSQL 13+)
    safe_wal_size: int | None = None  # bytes that may still be written before the slot is at risk
    retained_bytes: int | None = None  # pg_current_wal_lsn() - restart_lsn
    unconfirmed_bytes: int | None = None  # pg_current_wal_lsn() - confirmed_flush_lsn

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def slot_wal(conn: psycopg.Connection, slot: str) -> SlotWal:
    row = conn.execute(SLOT_WAL_QUERY, (slot,)).fetchone()
    if row is None:
        return SlotWal(slot, exists=False)
    active, status, safe, retained, unconfirmed = row
    return SlotWal(
        slot,
        True,
        bool(active),
        str(status or ""),
        None if safe is None else int(safe),
        None if retained is None else int(retained),
        None if unconfirmed is None else int(unconfirmed),
    )


def wal_keep_limit(conn: psycopg.Connection) -> int | None:
    """``max_slot_wal_keep_size`` in bytes; None when unbounded (-1)."""
    row = conn.execute("SELECT setting::bigint, unit FROM pg_settings WHERE name = 'max_slot_wal_keep_size'").fetchone()
    if row is None or int(row[0]) < 0:
        return None
    units = {"kB": 1024, "MB": 1024**2, "GB": 1024**3, "8kB": 8192, "16MB": 16 * 1024**2}
    return int(row[0]) * units.get(str(row[1] or "MB"), 1024**2)


def describe_keep_limit(limit: int | None) -> str:
    """What ``max_slot_wal_keep_size`` means for capture, in one sentence."""
    if limit is None:
        return (
            "max_slot_wal_keep_size is -1 (unbounded): while capture does not confirm positions the slot "
            "retains every WAL segment, and PostgreSQL's disk is at risk; watch "
            "projectors_capture_slot_retained_wal_bytes (alert ProjectorsCaptureWalRetained)"
        )
    return (
        f"max_slot_wal_keep_size is {human_bytes(limit)}: the disk is safe, but a slot that retains more "
        "than that is invalidated by PostgreSQL (wal_status lost) and capture then refuses to start; the "
        "recovery is `projectors capture --recover-slot` (a new snapshot position, projections rebuilt)"
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
