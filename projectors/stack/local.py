"""`projectors stack up | down | status`: the whole local stack, in dependency order."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from projectors.db.migrate import migrate
from projectors.errors import ConfigurationError
from projectors.projections import PROJECTION_NAMES, capture_tables
from projectors.settings import Settings
from projectors.stack import integrity
from projectors.stack.commands import Capture, Worker
from projectors.stack.part import Part, PartStatus
from projectors.stack.processes import PART_CLASSES, worker_processes
from projectors.stack.servers import Broker

SERVERS = ("postgres", "broker", "falkordb", "redis", "cosmos", "cosmos-counters", "cosmos-notifications", "capture")
WORKERS = tuple(f"worker-{p}" for p in PROJECTION_NAMES)  # one per projection module
READERS = ("reader",)  # the HTTP read API: after the workers, it reads what they write
ORDER = SERVERS + WORKERS + READERS


class LocalDeployment:
    """The local stack, as ``status`` sees it (``operations/deployment.py``): the stores' markers
    from ``integrity``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def store_state(self, projection: str) -> str | None:
        return integrity.store_state(self.settings, projection)


PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "projectors-ports"
PORT_RESERVATION_S = 6 * 3600.0  # a reservation older than this is free again


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux), else IANA's."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now, for a server of a private stack.

    Chosen below the kernel's ephemeral range: a port from that range (what binding to port 0
    gives) can be taken as the local port of any outgoing connection before the server binds it,
    which stopped parallel test stacks with "port already taken". And reserved (a file created
    exclusively in a folder of the machine's temporary directory) so that parallel processes,
    test files and benchmarks, never pick the same one."""
    low, _high = ephemeral_ports()
    first, last = (20_000, low) if low > 24_000 else (10_000, 20_000)
    PORT_RESERVATIONS.mkdir(parents=True, exist_ok=True)
    for _ in range(2_000):
        port = random.randrange(first, last)
        reservation = PORT_RESERVATIONS / str(port)
        with contextlib.suppress(OSError):
            if time.time() - reservation.stat().st_mtime > PORT_RESERVATION_S:
                reservation.unlink()
        try:
            os.close(os.open(reservation, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        with contextlib.closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: its reservation stays, so nobody tries it again for a while
        return port
    with contextlib.closing(socket.socket()) as sock:  # every candidate taken: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


JVM_OPTIONS = "PROJECTORS_CAPTURE_JVM_OPTIONS"


def private_stack_env(root: Path) -> dict[str, str]:
    """The settings of a stack of its own (tests, benchmarks): its folder ``root`` and every server
    on a free port, topics of 3 partitions, capture heartbeats every second (and the capture JVM's
    options, when the environment sets them)."""
    return {
        "PROJECTORS_STACK_DIR": str(root),
        "PROJECTORS_PG_PORT": str(free_port()),
        "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "PROJECTORS_FALKORDB_PORT": str(free_port()),
        "PROJECTORS_REDIS_PORT": str(free_port()),
        "PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PROJECTORS_COSMOS_COUNTERS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PROJECTORS_COSMOS_NOTIFICATIONS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PROJECTORS_READ_API_PORT": str(free_port()),
        "PROJECTORS_CAPTURE_HEARTBEAT_INTERVAL_MS": "1000",
        "PROJECTORS_KAFKA_TOPIC_PARTITIONS": "3",
        # several private stacks share the machine (parallel test files, a bench's drills): a JVM
        # start (capture) took over 60 s at a load average of 12
        "PROJECTORS_STACK_START_TIMEOUT_S": "180",
        # the JVM's options are the machine's, not the stack's: taken from the environment
        **({JVM_OPTIONS: os.environ[JVM_OPTIONS]} if JVM_OPTIONS in os.environ else {}),
    }


def worker_parts(settings: Settings) -> list[Worker]:
    return [p for p in parts(settings) if isinstance(p, Worker)]


def parts(settings: Settings, names: Iterable[str] = ORDER) -> list[Part]:
    """The named parts, in start order; ``worker-<projection>`` stands for every worker process of
    that projection (``PROJECTORS_STACK_WORKERS``)."""
    wanted = set(names)
    unknown = [n for n in wanted if n not in PART_CLASSES]
    if unknown:
        raise ConfigurationError(f"unknown stack part {', '.join(unknown)} (known: {', '.join(ORDER)})")
    out: list[Part] = []
    for name in ORDER:
        if name not in wanted:
            continue
        if name in WORKERS:
            out += worker_processes(settings, name.removeprefix("worker-"))
        else:
            out.append(PART_CLASSES[name](settings))
    return out


def up(settings: Settings, names: Iterable[str] = ORDER, say: Callable[[str], None] = print) -> dict[str, float]:
    """Start the named parts (all by default), each waited on until healthy; migrations are applied
    once PostgreSQL is up, before capture starts. Returns the seconds each part took."""
    partitions = settings.kafka.topic_partitions
    for projection in integrity.PROJECTIONS:
        if settings.stack.worker_count(projection) > partitions:
            raise ConfigurationError(
                f"PROJECTORS_STACK_WORKERS asks {settings.stack.worker_count(projection)} worker processes for "
                f"{projection}, more than its topics' {partitions} partitions (PROJECTORS_KAFKA_TOPIC_PARTITIONS): "
                "the others would idle"
            )
    timings: dict[str, float] = {}
    timeout = settings.stack.start_timeout_s
    started_here: list[Part] = []
    chosen = parts(settings, names)
    width = name_width(chosen)
    # the projections whose workers are named: their stores are checked (and restored when they lost
    # data, pausing workers that run) once the servers run, before the first worker starts
    starting = [p.projection for p in chosen if isinstance(p, Worker)]
    for part in chosen:
        started = time.monotonic()
        was_running = part.pid() is not None
        try:
            if isinstance(part, Worker) and starting:
                integrity.reconcile(settings, dict.fromkeys(starting), say)
                starting = []
            part.start(timeout)
            if not was_running:
                started_here.append(part)
                if isinstance(part, Broker):
                    integrity.broker_started(settings)
            if part.name == "postgres":
                migrate(settings.pg, settings.capture.publication, capture_tables(settings.capture))
        except BaseException:
            # a part that cannot start (a taken port, a missing prerequisite) leaves nothing behind:
            # what this call started is stopped again, what ran before is left running
            for done in reversed(started_here):
                with contextlib.suppress(Exception):
                    done.stop()
            raise
        timings[part.name] = time.monotonic() - started
        say(f"  {part.name:<{width}} up    {part.address}  ({timings[part.name]:.1f}s)")
    return timings


def down(settings: Settings, names: Iterable[str] = ORDER, say: Callable[[str], None] = print) -> None:
    """Stop the named parts in reverse order; no process is left behind.

    The broker keeps nothing across a restart: before it stops, capture is stopped and the running
    workers are given up to the start timeout to project what the topics hold; a projection still
    behind then is restored at the next ``stack up`` (``integrity.py``)."""
    chosen = parts(settings, names)
    width = name_width(chosen)
    broker = next((p for p in chosen if isinstance(p, Broker) and p.pid() is not None), None)
    stopped: set[str] = set()
    if broker is not None:
        capture = next((p for p in chosen if isinstance(p, Capture)), None)
        if capture is not None and capture.pid() is not None:
            stop_part(capture, width, say)
            stopped.add(capture.name)
        projecting = {p.projection for p in worker_parts(settings) if p.pid() is not None}
        idle = [p for p in integrity.PROJECTIONS if p not in projecting]
        if projecting:
            say(f"  waiting up to {settings.stack.start_timeout_s:.0f}s for the workers of "
                f"{', '.join(sorted(projecting))} to project what the topics hold (the broker keeps nothing)")
        waited = time.monotonic()
        try:
            lagging = integrity.behind(settings, settings.stack.start_timeout_s, sorted(projecting))
            lagging += integrity.behind(settings, 0.0, idle)
        except Exception as exc:  # the broker does not answer: nothing can be known
            say(f"  broker does not answer ({exc}): every projection is restored at the next stack up")
            lagging = list(integrity.PROJECTIONS)
        else:
            if projecting and not lagging:
                say(f"  every projection has projected what the topics hold ({time.monotonic() - waited:.1f}s)")
        for projection in lagging:
            say(f"  {projection}: events left unprojected on the broker: restored at the next stack up")
        integrity.broker_stopping(settings, lagging)
    for part in reversed(chosen):
        if part.name not in stopped:
            stop_part(part, width, say)


def stop_part(part: Part, width: int, say: Callable[[str], None]) -> None:
    """Stop one part, saying first what the stop waits for when the part runs."""
    if part.pid() is None:
        part.stop()  # clears a stale pid file
        say(f"  {part.name:<{width}} down")
        return
    say(f"  {part.name:<{width}} stopping: {part.stopping}")
    started = time.monotonic()
    part.stop()
    say(f"  {part.name:<{width}} down  ({time.monotonic() - started:.1f}s)")


def name_width(chosen: Iterable[Part]) -> int:
    return max((len(p.name) for p in chosen), default=0)


def status(settings: Settings) -> list[PartStatus]:
    return [part.status() for part in parts(settings)]


def status_lines(rows: list[PartStatus], address_width: int = 40) -> list[str]:
    """``stack status`` as aligned columns: name, up/down, address, pid, log (an address longer
    than ``address_width`` pushes only its own row's tail)."""
    width = max((len(r.name) for r in rows), default=0)
    addresses = max((len(r.address) for r in rows if len(r.address) <= address_width), default=0)
    pids = max((len(str(r.pid or "-")) for r in rows), default=1)
    return [
        f"  {r.name:<{width}}  {'up' if r.up else 'down':<4}  {r.address:<{addresses}}  "
        f"pid={r.pid or '-'!s:<{pids}}  log={r.log}"
        for r in rows
    ]
