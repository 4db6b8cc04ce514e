"""Whether each projection's store still holds what the local stack wrote there, and restoring it
by itself when it does not.

FalkorDB and the Cosmos REST server keep their data across ``stack down``/``stack up``, but a part
can still lose it (a killed Cosmos server keeps nothing; a deleted data folder). The broker (Tansu,
memory storage) always starts empty: its topics and the groups' offsets are gone, so an event that
was published but not yet projected when it stopped is lost for the projections. Both are detected:

- The stack folder holds a record, ``stack.json``: the stack's id, the projections whose store got a
  marker, and the projections that may have missed events (``atRisk``).
- Each store gets a marker holding that id when its workers first start, kept next to its
  generation pointer (so a rebuild keeps it): the FalkorDB key ``projectors:stack:<graph>``, the
  Cosmos item ``stack:<projection>`` in ``projectorsGenerations``, the file ``<search file>.stack``
  (with the live generation's file). A marked store without its marker has lost its data.
- ``stack down`` stops capture first and lets the workers finish what the topics hold; a projection
  still behind when the broker stops is at risk; so is every projection when the broker stopped
  without ``stack down`` (it crashed).

``stack up`` restores a projection whose store lost its data or that is at risk before its workers
start, by a rebuild from the state of PostgreSQL (``operations/rebuild.py``: a new generation loaded
from one snapshot, caught up, verified, swapped in, the group moved to where it got), and says so.
``projectors status`` shows a marked store without its marker as ``LOST`` and one being restored as
``RESTORING``, never ``up``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projectors.errors import ConfigurationError
from projectors.projections import PROJECTION_NAMES, descriptor
from projectors.runtime.observe import pid_alive
from projectors.settings import Settings

PROJECTIONS = PROJECTION_NAMES


@dataclass
class StackRecord:
    id: str
    marked: list[str] = field(default_factory=list)
    at_risk: list[str] = field(default_factory=list)
    broker_stopped: bool = True  # the last broker was stopped by ``stack down`` (not crashed)

    def save(self, settings: Settings) -> None:
        path = record_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {"id": self.id, "marked": self.marked, "atRisk": self.at_risk, "brokerStopped": self.broker_stopped},
                indent=2,
            )
        )
        os.replace(temporary, path)


def record_path(settings: Settings) -> Path:
    return settings.stack.dir.absolute() / "stack.json"


def read_record(settings: Settings) -> StackRecord | None:
    try:
        data = json.loads(record_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return StackRecord(
        str(data["id"]), list(data.get("marked", [])), list(data.get("atRisk", [])), bool(data.get("brokerStopped"))
    )


def record(settings: Settings) -> StackRecord:
    """The stack's record, created (a new id, nothing marked, nothing at risk) at the first start."""
    found = read_record(settings)
    if found is None:
        found = StackRecord(uuid.uuid4().hex)
        found.save(settings)
    return found


# -- markers --------------------------------------------------------------------------------------
def _sqlite_marker(settings: Settings) -> Path:
    return Path(f"{settings.search_sqlite_path}.stack")


def _redis(settings: Settings) -> Any:
    import redis

    r = settings.redis
    return redis.Redis(
        r.host, r.port, username=r.worker_user, password=r.worker_password.get_secret_value(), socket_timeout=10.0,
        decode_responses=True,
    )


def read_marker(settings: Settings, projection: str) -> str | None:
    """The stack id the store of ``projection`` holds; None when it holds none (or lost it)."""
    if projection == "graph":
        import redis

        client = redis.Redis(settings.falkordb.host, settings.falkordb.port, socket_timeout=10.0)
        try:
            value = client.get(f"projectors:stack:{settings.falkordb.graph}")
        finally:
            client.close()
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
    if descriptor(projection).store == "redis":
        client = _redis(settings)
        try:
            value = client.get(f"{settings.redis.prefix}.stack:{projection}")
        finally:
            client.close()
        return None if value is None else str(value)
    if projection == "search":
        from projectors.stores.factory import current_generation
        from projectors.stores.generations import sqlite_path

        live = sqlite_path(settings.search_sqlite_path, current_generation(settings, "search"))
        marker = _sqlite_marker(settings)
        if not live.exists() or not marker.exists():
            return None
        return marker.read_text().strip()
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    from projectors.stores.cosmos import CosmosStore
    from projectors.stores.generations import POINTER_CONTAINER

    store = CosmosStore(settings.cosmos.of(descriptor(projection).cosmos_account), {})
    try:
        items = list(
            store.database.get_container_client(POINTER_CONTAINER).query_items(
                "SELECT c.stackId FROM c WHERE c.id = @id",
                parameters=[{"name": "@id", "value": f"stack:{projection}"}],
                partition_key=f"stack:{projection}",
            )
        )
    except CosmosResourceNotFoundError:  # no database or no container: nothing is kept there
        return None
    finally:
        store.close()
    return str(items[0]["stackId"]) if items else None


def write_marker(settings: Settings, projection: str, stack_id: str) -> None:
    if projection == "graph":
        import redis

        client = redis.Redis(settings.falkordb.host, settings.falkordb.port, socket_timeout=10.0)
        try:
            client.set(f"projectors:stack:{settings.falkordb.graph}", stack_id)
        finally:
            client.close()
        return
    if descriptor(projection).store == "redis":
        client = _redis(settings)
        try:
            client.set(f"{settings.redis.prefix}.stack:{projection}", stack_id)
        finally:
            client.close()
        return
    if projection == "search":
        from projectors.stores.factory import open_raw_store

        open_raw_store(settings, "search").close()  # the live generation's file exists
        _sqlite_marker(settings).write_text(stack_id + "\n")
        return
    from azure.cosmos import PartitionKey

    from projectors.stores.cosmos import CosmosStore
    from projectors.stores.generations import POINTER_CONTAINER

    store = CosmosStore(settings.cosmos.of(descriptor(projection).cosmos_account), {})
    try:
        database = store.client.create_database_if_not_exists(settings.cosmos.database)
        container = database.create_container_if_not_exists(POINTER_CONTAINER, PartitionKey("/id"))
        container.upsert_item({"id": f"stack:{projection}", "stackId": stack_id})
    finally:
        store.close()


def local_backend(settings: Settings, projection: str) -> bool:
    """Whether ``projection``'s store is one the local stack runs (markers are kept only there)."""
    if projection == "graph":
        return settings.graph.backend == "falkordb"
    if projection == "search":
        return settings.search.backend == "sqlite"
    return True


# -- what status reports --------------------------------------------------------------------------
def _restoring_file(settings: Settings, projection: str) -> Path:
    return settings.stack.dir.absolute() / "run" / f"restoring-{projection}"


def store_state(settings: Settings, projection: str) -> str | None:
    """``RESTORING`` while ``stack up`` restores the store, ``LOST`` when the store was marked and
    holds no marker (or another stack's); None otherwise (or outside a local stack)."""
    try:
        pid = int(_restoring_file(settings, projection).read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid and pid_alive(pid):
        return "RESTORING"
    found = read_record(settings)
    if found is None or projection not in found.marked or not local_backend(settings, projection):
        return None
    return None if read_marker(settings, projection) == found.id else "LOST"


# -- stack up and down ----------------------------------------------------------------------------
def broker_started(settings: Settings) -> None:
    """The broker has just started empty: every projection may have lost events, unless ``stack
    down`` stopped the last one after they had projected everything."""
    found = record(settings)
    if not found.broker_stopped:  # it stopped on its own: nothing is known
        found.at_risk = sorted(set(found.at_risk) | {p for p in found.marked})
    found.broker_stopped = False
    found.save(settings)


def broker_stopping(settings: Settings, behind: Iterable[str]) -> None:
    """``stack down`` is about to stop the broker; ``behind``: projections that have not projected
    every event of the topics."""
    found = record(settings)
    found.at_risk = sorted(set(found.at_risk) | set(behind))
    found.broker_stopped = True
    found.save(settings)


def behind(
    settings: Settings, wait_s: float, projections: Iterable[str] = PROJECTIONS, stall_s: float = 10.0
) -> list[str]:
    """The projections whose group has not committed every event of its topics, after waiting up to
    ``wait_s`` for their workers to catch up (less when their groups commit nothing for ``stall_s``:
    a worker that cannot write its store does not catch up)."""
    from projectors.operations import offsets

    deadline = time.monotonic() + wait_s
    left = list(projections)
    progress, progress_at = -1, time.monotonic()
    while True:
        still, committed = [], 0
        for projection in left:
            ends = offsets.ends(settings, descriptor(projection).topics(settings), idle_s=0.3)
            done = offsets.committed(settings, descriptor(projection).group)
            committed += sum(max(0, v) for v in done.values())
            if any(done.get(k, 0) < end for k, end in ends.items() if end > 0):
                still.append(projection)
        now = time.monotonic()
        if committed != progress:
            progress, progress_at = committed, now
        if not still or now > deadline or now - progress_at > stall_s:
            return still
        left = still
        time.sleep(1.0)


def reconcile(settings: Settings, projections: Iterable[str], say: Callable[[str], None]) -> None:
    """Before the workers of ``projections`` start: mark new stores, restore lost or at-risk ones
    (a restore is a rebuild, which pauses the projection's workers through the control topic)."""
    from projectors.operations.rebuild import rebuild
    from projectors.operations.report import Lines

    found = record(settings)
    for projection in projections:
        if not local_backend(settings, projection):
            continue
        reason = ""
        try:
            marker = read_marker(settings, projection) if projection in found.marked else found.id
        except Exception as exc:
            raise ConfigurationError(
                f"{projection}: its store does not answer, so what it holds cannot be checked ({exc}); "
                "start it first (projectors stack up)"
            ) from exc
        if marker != found.id:
            reason = "its store has lost its data"
        elif projection in found.at_risk:
            reason = "the broker restarted before it had projected every event"
        if reason:
            say(f"  {projection}: {reason}: restoring it from the state of PostgreSQL")
            flag = _restoring_file(settings, projection)
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.write_text(str(os.getpid()))
            started = time.monotonic()
            try:
                report = rebuild(settings, projection, force=True, report=Lines(lambda line: say(f"    {line}")))
            finally:
                flag.unlink(missing_ok=True)
            loaded = report.loaded.items if report.loaded else 0
            say(
                f"  {projection}: restored ({loaded} items from PostgreSQL, {report.events} events caught up, "
                f"verified) in {time.monotonic() - started:.1f}s"
            )
        if reason or projection not in found.marked:
            write_marker(settings, projection, found.id)
            found.marked = sorted(set(found.marked) | {projection})
        found.at_risk = [p for p in found.at_risk if p != projection]
        found.save(settings)
