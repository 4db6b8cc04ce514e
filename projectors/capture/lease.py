"""One active capture per slot: a PostgreSQL session-level advisory lock is the lease.

The lock is held by a connection of its own for as long as capture streams. A second capture
waits for it as a standby (its state directory holds ``standby``, with who holds the lease) and
takes over when the holder's connection ends: the holder stopped, died (the server closes a dead
client's session, which releases every session lock), or lost PostgreSQL. The slot's own rule (one
consumer at a time) backs the lease: a capture that cannot tell whether it still holds the lease
stops streaming, and the slot refuses a second reader meanwhile.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import zlib
from pathlib import Path

import psycopg

from projectors.db.migrate import connect
from projectors.settings import Settings

log = logging.getLogger(__name__)

LOCK_CLASS = 0x70726A  # "prj": the first key of the two-key advisory lock


def lock_key(slot: str) -> int:
    """The second key: the slot name's CRC-32 as a signed 32-bit integer."""
    value = zlib.crc32(slot.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


class Lease:
    """The advisory lock of one slot, on a dedicated connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slot = settings.capture.slot_name
        self.key = lock_key(self.slot)
        self.state_dir: Path = settings.capture_state_dir
        self.name = f"projectors-capture {socket.gethostname()} pid {os.getpid()}"
        self._conn: psycopg.Connection | None = None
        self.waited = False  # this process waited as a standby at least once

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.settings.pg,
                autocommit=True,
                application_name=self.name[:63],
                # a holder that vanished without closing its socket (a node lost) is noticed by the
                # server within about 30 s, and its lock released
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=4,
            )
        return self._conn

    def holder(self) -> str:
        """Who holds the lease (its connection's application name and server process), or ``none``."""
        row = self._connect().execute(
            "SELECT a.application_name, l.pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = (%s::bigint & 4294967295) "
            "AND l.objsubid = 2 AND l.granted",
            (LOCK_CLASS, self.key),
        ).fetchone()
        return f"{row[0] or '?'} (server process {row[1]})" if row else "none"

    def acquire(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Wait for the lease (as a standby while another capture holds it); False if ``stop`` was
        set first. Connection failures propagate (the caller retries with backoff)."""
        standby = self.state_dir / "standby"
        said = ""
        try:
            while not stop.is_set():
                row = self._connect().execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self.key)).fetchone()
                if row and row[0]:
                    log.info("lease on slot %s taken: this capture is the active one", self.slot)
                    return True
                self.waited = True
                holder = self.holder()
                if holder != said:
                    said = holder
                    self.state_dir.mkdir(parents=True, exist_ok=True)
                    standby.write_text(f"standby: slot {self.slot} is captured by {holder}\n")
                    log.info("standby: slot %s is captured by %s; waiting for its lease", self.slot, holder)
                stop.wait(poll_s)
            return False
        finally:
            standby.unlink(missing_ok=True)

    def held(self) -> bool:
        """Whether this process still holds the lease (its connection answers and has the lock)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
                "AND objid::bigint = (%s::bigint & 4294967295) AND objsubid = 2 AND granted AND pid = pg_backend_pid()",
                (LOCK_CLASS, self.key),
            ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def release(self) -> None:
        """Close the connection (which releases the lock)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
