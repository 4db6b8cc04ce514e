"""`verify --wait`, first step: wait until the pipeline has applied what PostgreSQL held when the
command started, reading no store.

1. Capture: PostgreSQL's WAL position at start (``pg_current_wal_lsn()``) is published. Capture
   confirms a position to its replication slot (``confirmed_flush_lsn``) only after the broker
   acknowledged every record up to it (embedded engine and Kafka Connect alike), so the slot is
   what is read. A quiet database still moves the slot past the start position: capture's heartbeat
   (every ``PROJECTORS_CAPTURE_HEARTBEAT_INTERVAL_MS``) writes a row. With heartbeats off (0), or no
   slot, this step is skipped and the report says so.
2. The ends of the projection's topics are then taken: each partition's true end (``offsets.ends``
   reads past the local broker's high watermark, which stops short after batched produce), taken
   after step 1 so they hold every change made before the start.
3. The projection's consumer group has committed, in every partition, an offset at or past that end
   (a partition never committed counts from its first retained offset, as in ``status``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from projectors.capture.preflight import format_lsn, parse_lsn
from projectors.operations.offsets import committed, earliest, ends
from projectors.projections import descriptor
from projectors.settings import Settings

POLL_S = 1.0


@dataclass
class PipelineWait:
    """How the wait for one projection's pipeline ended."""

    caught_up: bool = False
    waited_s: float = 0.0
    capture: str = ""  # "caught up", "behind", or why it was not checked
    start_lsn: str = ""
    lag: int = 0  # events between the group's committed offsets and the ends taken, when the wait ended

    def as_dict(self) -> dict[str, Any]:
        return {
            "caughtUp": self.caught_up, "waitedS": round(self.waited_s, 1), "capture": self.capture,
            "startLsn": self.start_lsn, "lag": self.lag,
        }


def current_lsn(settings: Settings) -> int:
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


def slot_lsn(settings: Settings) -> int | None:
    """What capture has confirmed to its replication slot (None: no slot, or nothing confirmed)."""
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (settings.capture.slot_name,),
        ).fetchone()
    return parse_lsn(str(row[0])) if row is not None and row[0] is not None else None


def wait_for_capture(settings: Settings, start_lsn: int, deadline: float, sleep: Callable[[float], None]) -> str:
    if settings.capture.heartbeat_interval_ms == 0:
        return "not checked (capture heartbeats are off: a quiet slot may never pass the start)"
    while True:
        confirmed = slot_lsn(settings)
        if confirmed is None:
            return f"not checked (no replication slot {settings.capture.slot_name!r} with a confirmed position)"
        if confirmed >= start_lsn:
            return "caught up"
        if time.monotonic() >= deadline:
            return f"behind (slot at {format_lsn(confirmed)})"
        sleep(POLL_S)



def remaining(
    settings: Settings, name: str, targets: dict[tuple[str, int], int], lows: dict[tuple[str, int], int]
) -> int:
    """Events of ``targets`` the group has not committed yet."""
    done = committed(settings, descriptor(name).group)
    left = 0
    for tp, end in targets.items():
        offset = done.get(tp)
        position = offset if offset is not None and offset >= 0 else lows.get(tp, 0)
        left += max(0, end - position)
    return left


def wait_for_pipeline(
    settings: Settings,
    names: list[str],
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
    start_lsn: int | None = None,
) -> dict[str, PipelineWait]:
    """Wait (until ``deadline`` at most) for capture and then each projection's group to apply what
    the source held at the call (or at ``start_lsn``: a writer's commit, for read-your-writes);
    never reads a store."""
    started = time.monotonic()
    if start_lsn is None:
        start_lsn = current_lsn(settings)
    capture = wait_for_capture(settings, start_lsn, deadline, sleep)
    topics = sorted({t for name in names for t in descriptor(name).topics(settings)})
    targets = ends(settings, topics)
    lows = {(tp.topic, tp.partition): tp.offset for tp in earliest(settings, topics)}
    out: dict[str, PipelineWait] = {}
    for name in names:
        mine = {tp: end for tp, end in targets.items() if tp[0] in set(descriptor(name).topics(settings))}
        left = remaining(settings, name, mine, lows)
        while left and time.monotonic() < deadline:
            sleep(POLL_S)
            left = remaining(settings, name, mine, lows)
        out[name] = PipelineWait(
            caught_up=left == 0 and not capture.startswith("behind"),
            waited_s=time.monotonic() - started,
            capture=capture,
            start_lsn=format_lsn(start_lsn),
            lag=left,
        )
    return out
