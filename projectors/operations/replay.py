"""`projectors replay <projection> --from earliest | <ISO time> | <topic:partition:offset,...>`.

Moves the projection's consumer group back and lets its workers reprocess, showing progress. The
workers must not be running while the offsets move (their commits would overwrite the reset):
replay refuses while they run, and ``--force`` stops the local stack's workers of that projection,
resets, and starts them again. Replaying is always safe: the stores keep the newest read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import TopicPartition

from projectors.capture.connector import table_topic
from projectors.errors import ConfigurationError
from projectors.operations import offsets
from projectors.projections import PROJECTIONS
from projectors.runtime.worker import group_id
from projectors.settings import Settings
from projectors.stack.processes import PART_CLASSES, Part


def topics_of(settings: Settings, projection: str) -> list[str]:
    return [table_topic(settings.capture.topic_prefix, t) for t in PROJECTIONS[projection].tables]


def targets(settings: Settings, projection: str, start: str) -> list[TopicPartition]:
    topics = topics_of(settings, projection)
    if start == "earliest":
        return offsets.earliest(settings, topics)
    if ":" in start and not start[:4].isdigit():
        out = []
        for item in start.split(","):
            try:
                topic, partition, offset = item.rsplit(":", 2)
                out.append(TopicPartition(topic, int(partition), int(offset)))
            except ValueError:
                raise ConfigurationError(f"--from: {item!r} is not topic:partition:offset") from None
            if topic not in topics:
                raise ConfigurationError(f"--from: {topic} is not a topic of {projection} ({', '.join(topics)})")
        return out
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"--from {start!r}: use earliest, an ISO time (2026-11-22T10:00:00Z) or topic:partition:offset,..."
        ) from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"--from {start!r}: give a time zone (Z or +hh:mm)")
    return offsets.at_time(settings, topics, int(moment.timestamp() * 1000))


def local_workers(settings: Settings, projection: str) -> list[Part]:
    return [
        cls(settings)
        for name, cls in PART_CLASSES.items()
        if name == f"worker-{projection}" or name.startswith(f"worker-{projection}-")
    ]


@dataclass
class Progress:
    done: int
    total: int
    rate: float

    def bar(self, width: int = 30) -> str:
        share = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        eta = "-" if self.rate <= 0 else f"{max(0.0, (self.total - self.done) / self.rate):.0f}s"
        filled = int(share * width)
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} events "
            f"{share:6.1%}  {self.rate:7.1f} ev/s  ETA {eta}"
        )


def replay(
    settings: Settings,
    projection: str,
    start: str,
    force: bool = False,
    wait_s: float = 600.0,
    out: Callable[[str], None] = print,
) -> Progress:
    if projection not in PROJECTIONS:
        raise ConfigurationError(f"unknown projection {projection!r} (known: {', '.join(PROJECTIONS)})")
    group = group_id(projection)
    running = [w for w in local_workers(settings, projection) if w.pid() is not None]
    if running and not force:
        raise ConfigurationError(
            f"{len(running)} worker(s) of {projection} are running ({', '.join(w.name for w in running)}): "
            "stop them first, or use --force to stop, reset and restart them"
        )
    chosen = targets(settings, projection, start)
    for worker in running:
        out(f"stopping {worker.name}")
        worker.stop()
    offsets.commit(settings, group, chosen)
    out(f"group {group} reset: " + ", ".join(f"{t.topic}[{t.partition}]@{t.offset}" for t in chosen))
    for worker in running:
        worker.start(settings.stack.start_timeout_s)
        out(f"started {worker.name}")
    if not running:
        out(f"start the workers of {projection} (`projectors worker {projection}`) to reprocess")
    return follow(settings, projection, chosen, wait_s if running else 0.0, out)


def follow(
    settings: Settings, projection: str, start: list[TopicPartition], wait_s: float, out: Callable[[str], None]
) -> Progress:
    """Show the group's progress from ``start`` to the end offsets taken now, until done or ``wait_s``."""
    group = group_id(projection)
    begin = {(t.topic, t.partition): t.offset for t in start}
    end = offsets.ends(settings, topics_of(settings, projection))
    total = sum(max(0, end[k] - begin.get(k, end[k])) for k in end)
    started = time.monotonic()
    deadline = started + wait_s
    tty = sys.stdout.isatty()
    while True:
        now = offsets.committed(settings, group)
        done = sum(max(0, min(now.get(k, begin.get(k, 0)), end[k]) - begin.get(k, end[k])) for k in end)
        elapsed = max(0.001, time.monotonic() - started)
        progress = Progress(done, total, done / elapsed)
        if tty:
            sys.stdout.write("\r" + progress.bar())
            sys.stdout.flush()
        if done >= total or time.monotonic() >= deadline:
            if tty:
                sys.stdout.write("\n")
            out(progress.bar())
            return progress
        if not tty:
            out(progress.bar())
        time.sleep(1.0 if tty else 5.0)
