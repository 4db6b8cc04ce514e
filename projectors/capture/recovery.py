"""`projectors capture --recover-slot`: the way back from a lost replication slot.

A slot PostgreSQL invalidated (``wal_status = lost``, past ``max_slot_wal_keep_size``) or that was
dropped no longer holds the changes made since capture's last position: those changes (deletes
among them) will never be streamed. The recovery, in this order:

1. a new slot is created: its consistent point is the new snapshot position P; capture's state
   (here and on the broker) becomes "streaming from P" with no offsets, so the next capture streams
   every change after P from the slot, without a new snapshot of the tables;
2. every projection is rebuilt from the state of the source (``projectors rebuild``: a new store
   generation loaded from one PostgreSQL snapshot taken after P, verified, swapped in), so rows
   changed or deleted while the slot was lost are right again. Changes after P that the rebuild's
   snapshot already holds are applied again later: the version guard makes that harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from projectors.capture.preflight import CapturePosition, format_lsn, parse_lsn
from projectors.capture.state_store import BrokerState, CaptureState
from projectors.db.migrate import connect
from projectors.errors import DataLossRisk
from projectors.projections import DESCRIPTORS
from projectors.settings import Settings

Rebuild = Callable[[Settings, str], object]


def new_slot_position(settings: Settings) -> list[str]:
    """Step 1: drop the slot if any (refused while a capture reads it), create it again, record
    "streaming from its consistent point" as capture's state, here and on the broker."""
    slot = settings.capture.slot_name
    done: list[str] = []
    with connect(settings.pg, autocommit=True) as conn:
        row = conn.execute(
            "SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row and row[0]:
            raise DataLossRisk(f"slot {slot!r} is in use: stop capture (every replica) first")
        if row:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            done.append(f"dropped replication slot {slot} (wal_status {row[1]})")
        created = conn.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        lsn = parse_lsn(str(created.fetchone()[0]))  # type: ignore[index]
    done.append(f"created replication slot {slot} at {format_lsn(lsn)}: capture streams from there")
    state = settings.capture_state_dir
    state.mkdir(parents=True, exist_ok=True)
    for name in ("offsets.dat", "ready"):
        (state / name).unlink(missing_ok=True)
    position = CapturePosition(slot, lsn, streaming=True)
    position.save(state)
    broker = BrokerState(settings)
    try:
        broker.ensure_topic()
        broker.publish(CaptureState(position, b""))
    finally:
        broker.close()
    done.append(f"capture's state (here and on topic {settings.capture.state_topic}) starts at {format_lsn(lsn)}")
    return done


def recover_slot(settings: Settings, rebuild: Rebuild, projections: list[str] | None = None) -> list[str]:
    """Both steps; ``rebuild(settings, projection)`` rebuilds one projection from state."""
    done = new_slot_position(settings)
    for name in projections or list(DESCRIPTORS):
        rebuild(settings, name)
        done.append(f"rebuilt {name} from the source's state")
    return done
