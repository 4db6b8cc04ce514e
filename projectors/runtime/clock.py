"""A worker's batch clock (``PROJECTORS_WORKER_CLOCK``): where each change's time went, for the bench.

Off by default. When on, the worker appends one JSON line per applied batch to
``<stack dir>/run/clock/<projection>-<pid>.jsonl``: when the batch was handed to the projector and
when it was applied, and per change its row key and the times the pipeline already carries (all in
seconds since the epoch, one machine's clock):

- ``commit``: the source's ``source.ts_ms`` (PostgreSQL's commit time of the transaction);
- ``read``: the envelope's ``ts_ms`` (when Debezium handled the change);
- ``published``: the record's timestamp (set by capture's producer);
- ``fetched``: when the worker's faust stream took the change from its channel, i.e. into the
  batch buffer (faust's monitor stamps each message's ``time_in``); so ``fetched -> handed`` is the
  wait for the batch's hand-over (its timer, the batch before it), and ``published -> fetched`` the
  broker, the fetch and faust's consumer up to the stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from projectors.runtime.dead_letters import RawRecord
from projectors.settings import Settings

STAGES = ("commit", "read", "published", "fetched", "handed", "applied")


def clock_folder(settings: Settings) -> Path:
    return settings.stack.dir.absolute() / "run" / "clock"


def clock_path(settings: Settings, name: str) -> Path:
    return clock_folder(settings) / f"{name}-{os.getpid()}.jsonl"


def row_id(key: bytes | None) -> str | None:
    """The ``id`` of a change's key (``{"id": ...}``), else None."""
    if not key:
        return None
    try:
        value = json.loads(key)
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return None if found is None else str(found)


def envelope_times(value: bytes | None) -> tuple[float | None, float | None]:
    """(source ``ts_ms``, envelope ``ts_ms``) of a Debezium envelope, in seconds; None when absent."""
    if not value:
        return None, None
    try:
        envelope = json.loads(value)
    except ValueError:
        return None, None
    source = envelope.get("source") if isinstance(envelope, dict) else None
    committed = source.get("ts_ms") if isinstance(source, dict) else None
    read = envelope.get("ts_ms") if isinstance(envelope, dict) else None
    return (committed / 1000 if isinstance(committed, int) else None,
            read / 1000 if isinstance(read, int) else None)


class Taken:
    """One batch: its events and, when clocked, when each was fetched (entered the worker's stream)."""

    __slots__ = ("arrived", "events", "handed")

    def __init__(self, events: list[Any], arrived: list[float]) -> None:
        self.events = events
        self.arrived = arrived
        self.handed = 0.0


class BatchClock:
    """Appends each applied batch's times to its file (bench use: it decodes every envelope once more)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, records: Sequence[RawRecord], arrived: Sequence[float], handed: float, applied: float) -> None:
        changes: list[list[Any]] = []
        for record, fetched in zip(records, arrived, strict=False):
            committed, read = envelope_times(record.value)
            changes.append([record.topic, row_id(record.key), committed, read, record.timestamp_s, fetched])
        with self.path.open("a") as out:
            out.write(json.dumps({"handed": handed, "applied": applied, "changes": changes}) + "\n")


def read_clock(settings: Settings, name: str) -> dict[str, list[float | None]]:
    """Every clocked change of ``name``'s workers by row id: its times in :data:`STAGES` order (the
    latest change of a row wins)."""
    out: dict[str, list[float | None]] = {}
    for path in sorted(clock_folder(settings).glob(f"{name}-*.jsonl")):
        with path.open() as lines:
            for line in lines:
                try:
                    batch = json.loads(line)
                except ValueError:  # a line being written
                    continue
                for _topic, row, committed, read, published, fetched in batch["changes"]:
                    if row is not None:
                        out[row] = [committed, read, published, fetched, batch["handed"], batch["applied"]]
    return out
