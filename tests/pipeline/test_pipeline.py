"""End to end on the real parts: PostgreSQL -> Debezium -> broker -> faust workers -> Cosmos REST
server, FalkorDB, SQLite FTS5; `projectors verify` is the judge."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from projectors.capture.connector import table_topic
from projectors.capture.topics import read_from_start
from projectors.db.migrate import connect
from projectors.operations.dlq import letters
from projectors.operations.offsets import reset_to_earliest
from projectors.operations.verify import Drift, verify_until_clean
from projectors.projections import PROJECTIONS
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.stores import open_raw_store
from projectors.runtime.worker import group_id, read_stats
from projectors.settings import load_settings
from projectors.stack import local
from projectors.stack.processes import Part, Worker
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle, private_dir, stack_env

NAMES = list(PROJECTIONS)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[StackHandle]:
    env = stack_env(private_dir("projectors-e2e-"))
    env["PROJECTORS_WORKER_BATCH_SIZE"] = "200"
    env["PROJECTORS_WORKER_BATCH_WITHIN_S"] = "0.3"
    settings = load_settings(env)
    try:
        local.up(settings, local.SERVERS, say=lambda _l: None)
        yield StackHandle(settings, env)
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)
        for extra in (settings.stack.dir / "run").glob("*.pid"):
            pid = int(extra.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def worker(handle: StackHandle, projection: str, instance: int = 0) -> Part:
    """A worker part; instance > 0 is a second worker of the same projection (own pid/log file)."""
    name = f"worker-{projection}" + (f"-{instance}" if instance else "")
    cls = type(f"W_{projection}_{instance}", (Worker,), {"name": name, "projection": projection})
    return cls(handle.settings)


def assert_zero_drift(handle: StackHandle, names: list[str], wait_s: float = 240) -> list[Drift]:
    results = verify_until_clean(handle.settings, names, open_raw_store, wait_s=wait_s)
    for r in results:
        assert r.total == 0, json.dumps(r.as_dict(), indent=1)[:3000]
        assert r.checked > 0
    return results


def totals(handle: StackHandle, projection: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for stats in read_stats(handle.settings, projection):
        for key in ("events", "changed", "deadLetters", "operations"):
            out[key] = out.get(key, 0) + int(stats[key])
    return out


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_random_activity_reaches_every_projection_with_zero_drift(pipeline: StackHandle) -> None:
    with connect(pipeline.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(2026))
        load.seed(users=30, posts=40, follows=90)
        done = load.run(700)
        for rare in (load.delete_user, load.block, load.mute, load.unfollow, load.delete_post):
            rare()  # every kind of operation happens at least once, whatever the dice said
        conn.commit()
    # every kind of operation happened
    for op in (
        "posts.update",
        "posts.delete",
        "follows.delete",
        "blocks.insert",
        "mutes.insert",
        "reactions.delete",
        "replies.delete",
        "users.delete",
    ):
        assert done[op] > 0, op
    workers = [worker(pipeline, name) for name in NAMES]
    for w in workers:
        w.start(60)
    assert_zero_drift(pipeline, NAMES)


def test_replaying_every_topic_twice_changes_nothing(pipeline: StackHandle) -> None:
    settings = pipeline.settings
    assert_zero_drift(pipeline, NAMES)
    for _ in range(2):
        before = {name: totals(pipeline, name) for name in NAMES}
        for name in NAMES:
            worker(pipeline, name).stop()
        for name in NAMES:
            topics = [table_topic(settings.capture.topic_prefix, t) for t in PROJECTIONS[name].tables]
            reset_to_earliest(settings, group_id(name), topics)
        expected = {
            name: sum(
                1
                for _ in read_from_start(
                    settings,
                    [table_topic(settings.capture.topic_prefix, t) for t in PROJECTIONS[name].tables],
                    idle_s=2.0,
                )
            )
            for name in NAMES
        }
        for name in NAMES:
            worker(pipeline, name).start(60)
        for name in NAMES:
            wait_for(
                lambda n=name, b=before, e=expected: totals(pipeline, n).get("events", 0) - b[n].get("events", 0)
                >= e[n],
                240,
                f"{name} to re-read its topics",
            )
        after = {name: totals(pipeline, name) for name in NAMES}
        for name in NAMES:
            assert after[name]["changed"] == before[name].get("changed", 0), f"replay changed {name}"
    assert_zero_drift(pipeline, NAMES, wait_s=0)


def test_poison_events_are_dead_lettered_with_reason_and_origin(pipeline: StackHandle) -> None:
    settings = pipeline.settings
    topic = table_topic(settings.capture.topic_prefix, "posts")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(topic, key=b'{"id":"not-json', value=b"{this is not json")
    producer.produce(topic, key=b'{"id":"x"}', value=json.dumps({"op": "c", "after": {"id": 5}}).encode())
    assert producer.flush(10) == 0
    for name in ("feed", "counters", "graph", "search"):
        dlq = dead_letter_topic(settings, name)
        letters = list(read_from_start(settings, [dlq], timeout_s=60, until=lambda rs: len(rs) >= 2))
        reasons = [r.value for r in letters]
        assert len(reasons) >= 2, name
        assert all(r["origin"]["topic"] == topic and r["origin"]["offset"] >= 0 for r in reasons), reasons
        assert any("JSON" in r["reason"] or "json" in r["reason"] for r in reasons), reasons
    # processing went on: new activity still arrives with zero drift
    with connect(settings.pg) as conn:
        SocialWorkload(conn, rng=random.Random(5)).run(100)
    assert_zero_drift(pipeline, NAMES)


def test_a_new_nullable_column_breaks_nothing(pipeline: StackHandle) -> None:
    with connect(pipeline.settings.pg) as conn:
        conn.execute("ALTER TABLE posts ADD COLUMN IF NOT EXISTS mood text")
        conn.commit()
        conn.execute(
            "UPDATE posts SET mood = 'happy', body = body || ' !' WHERE id IN "
            "(SELECT id FROM posts ORDER BY id LIMIT 10)"
        )
        conn.commit()
        SocialWorkload(conn, rng=random.Random(9)).run(100)
    assert_zero_drift(pipeline, NAMES)
    for name in NAMES:
        assert totals(pipeline, name).get("deadLetters", 0) <= 2, list(letters(pipeline.settings, name))


def test_two_workers_share_a_projection_and_survive_a_sigkill(pipeline: StackHandle) -> None:
    second = worker(pipeline, "feed", instance=1)
    second.start(60)
    with connect(pipeline.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(77))
        load.run(300)
        first = worker(pipeline, "feed")
        pid = first.pid()
        assert pid is not None
        load.run(300)
        os.killpg(pid, signal.SIGKILL)  # mid-stream: its uncommitted batches go to the survivor
        load.run(300)
    assert_zero_drift(pipeline, ["feed"], wait_s=300)
    second.stop()
