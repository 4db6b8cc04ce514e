"""The parts of the local stack by name: the servers (``part.py``, ``postgres.py``,
``servers.py``) and the `projectors` commands (``commands.py``), a worker part per projection."""

from __future__ import annotations

from projectors.projections import PROJECTION_NAMES
from projectors.settings import Settings
from projectors.stack.commands import Capture, Reader, Worker
from projectors.stack.part import Part
from projectors.stack.postgres import Postgres
from projectors.stack.servers import Broker, Cosmos, CosmosCounters, CosmosNotifications, FalkorDB, Redis


def _worker_part(projection: str) -> type[Worker]:
    return type(f"Worker_{projection}", (Worker,), {"name": f"worker-{projection}", "projection": projection})


def worker_processes(settings: Settings, projection: str) -> list[Worker]:
    """The worker processes of ``projection``: as many as ``PROJECTORS_STACK_WORKERS`` asks, and any
    other that still runs (started with a higher count), so that every one of them is stopped."""
    cls = PART_CLASSES[f"worker-{projection}"]
    assert issubclass(cls, Worker)
    count = settings.stack.worker_count(projection)
    found = [cls(settings, i) for i in range(1, count + 1)]
    prefix = f"worker-{projection}-"
    run_dir = settings.stack.dir.absolute() / "run"
    extra = sorted(
        int(pid_file.stem.removeprefix(prefix))
        for pid_file in run_dir.glob(f"{prefix}*.pid")
        if pid_file.stem.removeprefix(prefix).isdigit()
    )
    for index in extra:
        if index > count:
            worker = cls(settings, index)
            if worker.pid() is not None:
                found.append(worker)
    return found


PART_CLASSES: dict[str, type[Part]] = {
    "postgres": Postgres,
    "broker": Broker,
    "falkordb": FalkorDB,
    "redis": Redis,
    "cosmos": Cosmos,
    "cosmos-counters": CosmosCounters,
    "cosmos-notifications": CosmosNotifications,
    "capture": Capture,
    "reader": Reader,
    **{f"worker-{p}": _worker_part(p) for p in PROJECTION_NAMES},
}
