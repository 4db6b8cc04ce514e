"""End to end on the real parts: PostgreSQL -> Debezium -> broker -> faust workers -> Cosmos REST
server, FalkorDB, SQLite FTS5; `projectors verify` is the judge."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from psycopg import sql

from projectors.capture.topics import read_from_start
from projectors.db.migrate import connect
from projectors.model import ItemKey, table_topic
from projectors.operations.dlq import letters
from projectors.operations.offsets import reset_to_earliest
from projectors.operations.verify import Drift, verify_until_clean
from projectors.projections import DESCRIPTORS, PROJECTIONS, descriptor
from projectors.projections.feed import FeedProjection
from projectors.read.client import ReadClient
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.stats import read_stats
from projectors.settings import load_settings
from projectors.source import PostgresSource
from projectors.stack import local
from projectors.stack.part import Part
from projectors.stores.factory import open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle, private_dir, stack_env, worker_part

NAMES = list(PROJECTIONS)
CELEBRITY_FOLLOWERS = 6


@pytest.fixture(scope="module")
def pipeline() -> Iterator[StackHandle]:
    env = stack_env(private_dir("projectors-e2e-"))
    env["PROJECTORS_WORKER_BATCH_SIZE"] = "200"
    env["PROJECTORS_WORKER_BATCH_WITHIN_S"] = "0.3"
    # a low celebrity threshold: the popular authors of these workloads are fanned out on read, and
    # cross the threshold both ways as follows come and go
    env["PROJECTORS_FEED_CELEBRITY_FOLLOWERS"] = str(CELEBRITY_FOLLOWERS)
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


def worker(handle: StackHandle, projection: str, index: int = 1) -> Part:
    return worker_part(handle.settings, projection, index)


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


def live_content(handle: StackHandle, name: str) -> dict[Any, Any]:
    store = open_raw_store(handle.settings, name)
    try:
        return {k: dict(d) for c in PROJECTIONS[name].collections for k, d in store.live_items(c)}
    finally:
        store.close()


# Cosmos writes without reading first: a replay rewrites each item with a newer version, the same
# content (compared in full); the other stores read first and report no change at all
BLIND = tuple(name for name in NAMES if DESCRIPTORS[name].store == "cosmos")


def test_replaying_every_topic_twice_changes_nothing(pipeline: StackHandle) -> None:
    settings = pipeline.settings
    assert_zero_drift(pipeline, NAMES)
    content = {name: live_content(pipeline, name) for name in BLIND}
    for _ in range(2):
        before = {name: totals(pipeline, name) for name in NAMES}
        for name in NAMES:
            worker(pipeline, name).stop()
        for name in NAMES:
            topics = [table_topic(settings.capture.topic_prefix, t) for t in PROJECTIONS[name].tables]
            reset_to_earliest(settings, descriptor(name).group, topics)
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
            if name not in BLIND:
                assert after[name]["changed"] == before[name].get("changed", 0), f"replay changed {name}"
    assert_zero_drift(pipeline, NAMES, wait_s=0)
    for name in BLIND:
        assert live_content(pipeline, name) == content[name], f"replay changed {name}"


def test_poison_events_are_dead_lettered_with_reason_and_origin(pipeline: StackHandle) -> None:
    settings = pipeline.settings
    topic = table_topic(settings.capture.topic_prefix, "posts")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(topic, key=b'{"id":"not-json', value=b"{this is not json")
    producer.produce(topic, key=b'{"id":"x"}', value=json.dumps({"op": "c", "after": {"id": 5}}).encode())
    # a well-formed envelope whose topic holds NUL, which PostgreSQL text cannot hold
    with connect(settings.pg) as conn:
        row = conn.execute("SELECT id::text, author_id::text FROM posts LIMIT 1").fetchone()
    assert row is not None
    nul = {"op": "u", "before": None, "after": {"id": row[0], "author_id": row[1], "body": "b",
                                                "topics": ["bad\u0000topic"], "visibility": "public"},
           "source": {"schema": "public", "table": "posts", "lsn": 1, "txId": 1}}
    producer.produce(topic, key=json.dumps({"id": row[0]}).encode(), value=json.dumps(nul).encode())
    assert producer.flush(10) == 0
    for name in ("feed", "counters", "graph", "search"):
        dlq = dead_letter_topic(settings, name)
        letters = list(read_from_start(settings, [dlq], timeout_s=60, until=lambda rs: len(rs) >= 3))
        reasons = [r.value for r in letters]
        assert len(reasons) >= 3, name
        assert all(r["origin"]["topic"] == topic and r["origin"]["offset"] >= 0 for r in reasons), reasons
        assert any("JSON" in r["reason"] or "json" in r["reason"] for r in reasons), reasons
        assert any("NUL" in r["reason"] for r in reasons), reasons
    # processing went on: new activity still arrives with zero drift
    with connect(settings.pg) as conn:
        SocialWorkload(conn, rng=random.Random(5)).run(100)
    assert_zero_drift(pipeline, NAMES)


def test_generated_malformed_events_among_valid_ones_lose_nothing(pipeline: StackHandle) -> None:
    """Hypothesis-generated malformed records (envelopes of any shape, raw bytes, valid rows with one
    bad field) on every capture topic, interleaved with real activity: each one that decoding
    rejects is dead-lettered by every projection that reads its topic, with its reason and origin;
    nothing else is lost: every store verifies clean afterwards."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from projectors.errors import PoisonEventError
    from projectors.events.decode import decode
    from tests.events.test_malformed import TABLES, envelopes, json_values

    settings = pipeline.settings
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    sent: list[tuple[str, bytes | None]] = []
    origins: dict[tuple[str, int, int], bytes | None] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        origins[(msg.topic(), msg.partition(), msg.offset())] = msg.value()

    values = st.one_of(
        envelopes().map(lambda e: json.dumps(e).encode()),
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.none(),
    )
    workload_conn = connect(settings.pg)
    load = SocialWorkload(workload_conn, rng=random.Random(97))
    load.users = [uuid.UUID(r[0]) for r in workload_conn.execute("SELECT id::text FROM users").fetchall()]
    load.posts = [uuid.UUID(r[0]) for r in workload_conn.execute("SELECT id::text FROM posts").fetchall()]

    @hypothesis_settings(max_examples=300, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(TABLES), values, st.integers(0, 9))
    def produce(table: str, value: bytes | None, activity: int) -> None:
        topic = table_topic(settings.capture.topic_prefix, table)
        sent.append((topic, value))
        producer.produce(topic, key=b'{"id":"generated"}', value=value, on_delivery=delivered)
        if activity == 0:  # valid changes between the malformed ones
            load.run(3)

    try:
        produce()
        load.run(50)
    finally:
        workload_conn.close()
    assert producer.flush(30) == 0 and len(origins) == len(sent) >= 300
    # what decoding rejects, by the projections that read each topic
    poison: dict[str, set[tuple[str, int, int]]] = {name: set() for name in NAMES}
    for (topic, partition, offset), value in origins.items():
        try:
            decode(topic, partition, offset, b'{"id":"generated"}', value)
        except PoisonEventError:
            for name, projection in PROJECTIONS.items():
                if topic in {table_topic(settings.capture.topic_prefix, t) for t in projection.tables}:
                    poison[name].add((topic, partition, offset))
    assert sum(map(len, poison.values())) > 100, "the generated records should be mostly malformed"
    def lettered(name: str) -> set[tuple[str, int, int]]:
        found = read_from_start(settings, [dead_letter_topic(settings, name)], timeout_s=60, idle_s=2)
        return {(r.value["origin"]["topic"], r.value["origin"]["partition"], r.value["origin"]["offset"])
                for r in found if r.value["reason"]}

    for name in NAMES:
        try:
            wait_for(lambda n=name: poison[n] <= lettered(n), 240, f"{name}: every rejected record dead-lettered")
        except AssertionError:
            missing = sorted(poison[name] - lettered(name))
            log = (settings.stack.dir / "logs" / f"worker-{name}.log")
            raise AssertionError(f"{name}: {len(missing)} of {len(poison[name])} not dead-lettered, e.g. "
                                 f"{[(m, origins[m]) for m in missing[:3]]}; log: "
                                 f"{log.read_text()[-3000:] if log.exists() else '(none)'}") from None
    assert_zero_drift(pipeline, NAMES)


def test_a_new_nullable_column_breaks_nothing(pipeline: StackHandle) -> None:
    before = {name: totals(pipeline, name).get("deadLetters", 0) for name in NAMES}
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
    for name in NAMES:  # the new column made no event a dead letter
        assert totals(pipeline, name).get("deadLetters", 0) == before[name], list(letters(pipeline.settings, name))


def test_two_workers_share_a_projection_and_survive_a_sigkill(pipeline: StackHandle) -> None:
    first = worker(pipeline, "feed")
    first.start(60)
    second = worker(pipeline, "feed", index=2)
    second.start(60)
    with connect(pipeline.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(77))
        load.run(300)
        pid = first.pid()
        assert pid is not None and second.pid() not in (None, pid), "two distinct feed worker processes"
        load.run(300)
        os.killpg(pid, signal.SIGKILL)  # mid-stream: its uncommitted batches go to the survivor
        load.run(300)
    assert_zero_drift(pipeline, ["feed"], wait_s=300)
    second.stop()


def full_fan_out_pages(handle: StackHandle, limit: int) -> dict[str, list[tuple[str, str]]]:
    """Every user's page as a fan-out of every post would give it: the feed spec with a threshold no
    author reaches, read from PostgreSQL."""
    pages: dict[str, list[tuple[str, str]]] = {}
    with connect(handle.settings.pg) as conn:
        users = [str(r[0]) for r in conn.execute("SELECT id FROM users")]
        for key, doc in FeedProjection(celebrity_followers=10**9).spec_all(PostgresSource(conn)):
            pages.setdefault(key.partition, []).append((doc["createdAt"], doc["postId"]))
    return {u: sorted(pages.get(u, []), reverse=True)[:limit] for u in users}


def test_merged_feed_pages_equal_a_full_fan_out(pipeline: StackHandle) -> None:
    """Celebrities' posts are stored once and merged on read: every user's page through the read
    client is the page a fan-out of every post gives on the same data."""
    assert_pages_equal_a_full_fan_out(pipeline, with_celebrities=True)


def assert_pages_equal_a_full_fan_out(pipeline: StackHandle, with_celebrities: bool) -> None:
    worker(pipeline, "feed").start(60)
    assert_zero_drift(pipeline, ["feed"])
    expected = full_fan_out_pages(pipeline, 20)
    reader = ReadClient(pipeline.settings)
    try:
        celebrities = [k.id for k, _ in open_raw_store(pipeline.settings, "feed").live_items("feedAuthors")]
        assert celebrities or not with_celebrities, "the workload should have authors above the threshold"
        merged = 0
        for user, page in expected.items():
            got = reader.feed_page(user, limit=20)
            assert [(i["createdAt"], i["postId"]) for i in got] == page, user
            assert all(i["id"] == f"{user}:{i['postId']}" and i["recipientId"] == user for i in got)
            merged += sum(i["authorId"] in celebrities and i["authorId"] != user for i in got)
        assert merged > 0 or not with_celebrities, "no page had a celebrity's post merged on read"
    finally:
        reader.close()


def test_authors_crossing_the_celebrity_threshold_converge(pipeline: StackHandle) -> None:
    """An author gains followers past the threshold (fanned out on read from then on), then loses
    them (fanned out on write again): zero drift after each, and the pages stay equal."""
    worker(pipeline, "feed").start(60)
    with connect(pipeline.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(404))
        author = load.create_user()
        fans = [load.create_user() for _ in range(CELEBRITY_FOLLOWERS + 2)]
        for i in range(5):
            conn.execute("INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, %s)",
                         (uuid.uuid4(), author, f"post {i}", ["x"], "public" if i else "private"))
        for fan in fans[: CELEBRITY_FOLLOWERS - 1]:
            conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (fan, author))
        conn.commit()
        assert_zero_drift(pipeline, ["feed"])
        marker = ItemKey("feedAuthors", str(author), str(author))
        store = open_raw_store(pipeline.settings, "feed")
        assert store.read_items([marker]) == {}  # type: ignore[attr-defined]
        for fan in fans[CELEBRITY_FOLLOWERS - 1 :]:
            conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (fan, author))
        conn.commit()
        assert_zero_drift(pipeline, ["feed"])
        assert marker in store.read_items([marker])  # type: ignore[attr-defined]
        conn.execute("DELETE FROM follows WHERE followee_id = %s AND follower_id = ANY(%s)", (author, fans[:4]))
        conn.commit()
        assert_zero_drift(pipeline, ["feed"])
        assert store.read_items([marker]) == {}  # type: ignore[attr-defined]
        store.close()
    assert_pages_equal_a_full_fan_out(pipeline, with_celebrities=False)


def test_feed_at_realistic_scale_reaches_zero_drift(pipeline: StackHandle) -> None:
    """The bench's feed scenario, smaller: 80 users with power-law followers, popular authors with
    many posts, 1,500 random operations written as fast as PostgreSQL takes them."""
    for name in ("feed", "counters"):
        worker(pipeline, name).start(60)
    with connect(pipeline.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(8080))
        for _ in range(50):
            load.create_user()
        for _ in range(300):
            load.follow()
        conn.commit()
        done = load.run(1500, commit_every=50)
    assert done["posts.insert"] > 200 and done["follows.delete"] > 0 and done["posts.delete"] > 0
    assert_zero_drift(pipeline, ["feed", "counters"], wait_s=300)
    for name in ("feed", "counters"):
        requests: dict[str, float] = {}
        for stats in read_stats(pipeline.settings, name):
            for kind, n in stats.get("storeRequests", {}).items():
                requests[kind] = requests.get(kind, 0) + n
        assert requests["point_write"] + requests["patch"] > 0, (name, requests)
        # point operations only: never a cross-partition query; partition queries only for the
        # feed's unfollows, blocks and mutes (one each at most)
        assert requests["cross_partition_query"] == 0, (name, requests)
        assert requests["query"] == 0 if name == "counters" else requests["query"] > 0, (name, requests)


def test_a_source_role_without_privileges_stops_the_worker_and_loses_nothing(pipeline: StackHandle) -> None:
    """A worker whose PostgreSQL role may connect but read nothing fails every event the same way:
    it exits with EX_CONFIG (78) naming the cause, dead-letters nothing and acknowledges nothing;
    started again with the right role, its projection converges."""
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    with connect(pipeline.settings.pg) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'nobody-pw'").format(sql.Identifier(role)))
        conn.commit()
    search = worker(pipeline, "search")
    search.stop()
    letters_before = len(list(letters(pipeline.settings, "search")))
    with connect(pipeline.settings.pg) as conn:
        SocialWorkload(conn, rng=random.Random(78)).run(20)
        conn.commit()
    done = pipeline.cli(
        "worker", "search", env={**pipeline.env, "PROJECTORS_PG_USER": role, "PROJECTORS_PG_PASSWORD": "nobody-pw"},
        timeout=240,
    )
    assert done.returncode == 78, done.stderr[-3000:]
    assert "configuration" in done.stderr and "permission denied" in done.stderr, done.stderr[-3000:]
    assert len(list(letters(pipeline.settings, "search"))) == letters_before
    search.start(60)
    assert_zero_drift(pipeline, ["search"])
