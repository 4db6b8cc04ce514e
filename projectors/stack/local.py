"""`projectors stack up | down | status`: the whole local stack, in dependency order."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

from projectors.db.migrate import migrate
from projectors.errors import ConfigurationError
from projectors.settings import Settings
from projectors.stack.processes import PART_CLASSES, Part, PartStatus

SERVERS = ("postgres", "broker", "falkordb", "cosmos", "capture")
WORKERS = ("worker-feed", "worker-counters", "worker-graph", "worker-search")
ORDER = SERVERS + WORKERS


def parts(settings: Settings, names: Iterable[str] = ORDER) -> list[Part]:
    unknown = [n for n in names if n not in PART_CLASSES]
    if unknown:
        raise ConfigurationError(f"unknown stack part {', '.join(unknown)} (known: {', '.join(ORDER)})")
    return [PART_CLASSES[n](settings) for n in ORDER if n in set(names)]


def up(settings: Settings, names: Iterable[str] = ORDER, say: Callable[[str], None] = print) -> dict[str, float]:
    """Start the named parts (all by default), each waited on until healthy; migrations are applied
    once PostgreSQL is up, before capture starts. Returns the seconds each part took."""
    timings: dict[str, float] = {}
    timeout = settings.stack.start_timeout_s
    started_here: list[Part] = []
    for part in parts(settings, names):
        started = time.monotonic()
        was_running = part.pid() is not None
        try:
            part.start(timeout)
            if not was_running:
                started_here.append(part)
            if part.name == "postgres":
                migrate(settings.pg, settings.capture.publication, settings.capture.table_list)
        except BaseException:
            # a part that cannot start (a taken port, a missing prerequisite) leaves nothing behind:
            # what this call started is stopped again, what ran before is left running
            for done in reversed(started_here):
                with contextlib.suppress(Exception):
                    done.stop()
            raise
        timings[part.name] = time.monotonic() - started
        say(f"  {part.name:<9} up   {part.address}  ({timings[part.name]:.1f}s)")
    return timings


def down(settings: Settings, names: Iterable[str] = ORDER, say: Callable[[str], None] = print) -> None:
    """Stop the named parts in reverse order; no process is left behind."""
    for part in reversed(parts(settings, names)):
        part.stop()
        say(f"  {part.name:<9} down")


def status(settings: Settings) -> list[PartStatus]:
    return [part.status() for part in parts(settings)]
