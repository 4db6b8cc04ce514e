"""The bench's private stack: its settings on free ports, its topics, fresh store generations,
the stack's own workers started at the end of their topics, the dead letters."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import TopicPartition

from projectors.bench.baselines import bare_consume
from projectors.bench.config import Say
from projectors.model import ProjectionStore
from projectors.operations import offsets
from projectors.projections import descriptor
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.retry import open_store
from projectors.settings import Settings, load_settings
from projectors.stack import local


def bench_settings(root: Path) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return load_settings({
        **local.private_stack_env(root),
        "PROJECTORS_WORKER_BATCH_SIZE": "1000",
        "PROJECTORS_WORKER_BATCH_WITHIN_S": "0.2",
        "PROJECTORS_WORKER_RETRY_MAX_S": "2",
    })


def count_events(settings: Settings, topics: list[str], at_least: int, say: Say) -> int:
    """Messages in ``topics``, once capture has published at least ``at_least`` and then stopped
    adding (counted by reading: the local broker's end offsets are short)."""
    previous = -1
    while True:
        now = bare_consume(settings, topics, 10**12, idle_s=3.0).events
        say(f"  topics hold {now} events (at least {at_least} expected)")
        if now >= at_least and now == previous:
            return now
        previous = now
        time.sleep(2.0)


@contextlib.contextmanager
def fresh_store(settings: Settings, name: str, generation: int = 80) -> Iterator[ProjectionStore]:
    """An empty generation of ``name``'s store (not the live one), dropped afterwards."""
    store = open_store(settings, name, generation)
    store.drop()
    store.ensure_schema()
    try:
        yield store
    finally:
        store.drop()
        store.close()


@contextlib.contextmanager
def live_workers(settings: Settings, names: list[str]) -> Iterator[None]:
    """The stack's workers of ``names``, started at the current end of their topics."""
    for name in names:
        ends = offsets.ends(settings, descriptor(name).topics(settings))

        offsets.commit(settings, descriptor(name).group, [TopicPartition(t, p, o) for (t, p), o in ends.items()])
    parts = [f"worker-{n}" for n in names]
    local.up(settings, parts, say=lambda _l: None)
    try:
        yield
    finally:
        local.down(settings, parts, say=lambda _l: None)


def count_letters(settings: Settings, name: str) -> int:
    topic = dead_letter_topic(settings, name)
    try:
        return bare_consume(settings, [topic], 10**12, idle_s=2.0, start_timeout_s=3.0).events
    except ValueError:  # no such topic yet
        return 0
