"""The benchmark load generator and baselines, against a real PostgreSQL and broker (small sizes)."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections import Counter

import psycopg
from confluent_kafka import Producer

from projectors.bench.baselines import Rate, bare_consume, bare_faust
from projectors.capture.preflight import ensure_topics
from projectors.workload import bulk as bulk_load
from projectors.workload import celebrity_post, seed, steady
from tests.conftest import running

TABLES = ("users", "posts", "replies", "follows", "reactions", "blocks", "mutes")


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        row = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


def expected_rows(seeded: Counter[str], ops: Counter[str]) -> dict[str, int]:
    """Rows per table after seed and ``ops`` (operation counters of bulk/steady)."""
    rows = {t: seeded[t] + ops[f"{t}.insert"] - ops[f"{t}.delete"] for t in TABLES}
    rows["replies"] -= ops["replies.cascade_delete"]
    rows["reactions"] -= ops["reactions.cascade_delete"]
    return rows


def test_seed_bulk_and_steady_write_exactly_what_they_report() -> None:
    rng = random.Random(42)
    with (
        running("projectors-bench-", ["postgres"]) as (settings, _env),
        psycopg.connect(settings.pg.conninfo()) as conn,
    ):
        population = seed(conn, users=300, celebrities=1, celebrity_followers=200, rng=rng)
        assert table_counts(conn) == expected_rows(population.seeded, Counter())
        assert population.seeded["users"] == 300 and population.seeded["posts"] > 300

        rows = conn.execute("SELECT followee_id, count(*) FROM follows GROUP BY followee_id").fetchall()
        followers: dict[uuid.UUID, int] = {r[0]: int(r[1]) for r in rows}
        celebrity = population.celebrities[0]
        assert followers[celebrity] == 200
        everyone = [followers.get(u, 0) for u in population.users]
        assert statistics.median(everyone) <= 5
        assert sorted(everyone, reverse=True)[1] < 200  # the power law stays below the celebrity

        ops = bulk_load(conn, population, events=2_000, rng=rng, tx_rows=200)
        assert 2_000 <= sum(ops.values()) < 2_200
        assert {"posts.insert", "posts.update", "posts.delete", "replies.insert", "reactions.insert",
                "reactions.delete", "follows.insert", "follows.delete", "users.update"} <= set(ops)  # fmt: skip
        assert table_counts(conn) == expected_rows(population.seeded, ops)

        posted: list[tuple[str, float]] = []
        before = time.time()
        report = steady(settings.pg.conninfo(), population, 50, 2.0, rng, on_post=lambda p, t: posted.append((p, t)))
        assert report.transactions == 100 and not report.fell_behind
        assert 45 <= report.achieved_rate <= 51
        assert table_counts(conn) == expected_rows(population.seeded, ops + report.counts)
        assert posted and all(before <= t <= time.time() for _p, t in posted)
        assert len(posted) <= report.counts["posts.insert"]

        post_id, committed_at = celebrity_post(conn, celebrity)
        assert committed_at <= time.time()
        row = conn.execute("SELECT author_id, visibility FROM posts WHERE id = %s", (uuid.UUID(post_id),)).fetchone()
        assert row == (celebrity, "public")


def test_baselines_count_exactly_what_the_topic_holds() -> None:
    with running("projectors-bench-", ["broker"]) as (settings, _env):
        topic = "bench.baseline"
        ensure_topics(settings, {topic: 3})
        producer = Producer({**settings.kafka.client_config(), "linger.ms": 5})  # batches: Tansu's wrong watermark
        for i in range(3_000):
            producer.produce(topic, key=str(i % 50).encode(), value=b'{"n": %d, "pad": "0123456789abcdef"}' % i)
        assert producer.flush(10) == 0

        exact = bare_consume(settings, [topic], expected=3_000)
        assert exact.events == 3_000
        more = bare_consume(settings, [topic], expected=3_001, idle_s=1.0)
        assert more.events == 3_000  # stopped by the idle period, nothing counted twice

        faust_rate = bare_faust(settings, [topic], expected=3_000, timeout_s=45)
        assert faust_rate.events == 3_000
        assert faust_rate.seconds >= 0 and faust_rate.warmup_events > 0


def test_rate_excludes_the_first_fetch() -> None:
    assert Rate(10_500, 2.0, warmup_events=500).per_s == 5_000
    assert Rate(3_000, 0.0, warmup_events=3_000).per_s == 0.0
