"""Bench: the redis projection. First its worker's rate against Redis's own pipeline rate
(``bench/redis_pipeline.py``: worker ÷ store, in one run); then a leaderboard's top 10 from Redis's
sorted set against the same answer computed by PostgreSQL, at 10k and 100k posts, in one run (a
ratio, not an absolute figure).

``python -m projectors.bench.leaderboard [--tiny] [--only pipeline|leaderboard]``: a private stack
(PostgreSQL, the broker, capture, Redis) in a temporary folder; for the leaderboards capture is
stopped and the tables emptied, then posts and likes written in SQL (authors' popularity and posts'
likes power-law shaped), Redis filled from the projection's own spec (``spec_all``, applied
through the store's version guard), then ``ReadClient.leaderboard("authors", today)`` timed against
the PostgreSQL fallback's query. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from projectors.bench.redis_pipeline import PARTS, PIPELINE, PIPELINE_TINY, pipeline
from projectors.db.migrate import connect
from projectors.model import Put
from projectors.projections.redis_views import RedisProjection
from projectors.read.client import ReadClient
from projectors.read.redis_reads import PostgresRedisReads
from projectors.settings import Settings, load_settings
from projectors.source import PostgresSource
from projectors.stack import local
from projectors.stores.factory import open_raw_store

USERS = 5_000
LIKES_PER_POST = 3  # on average; a few posts get most


def grow(settings: Settings, posts: int, population: int = USERS) -> None:
    """Add posts until there are ``posts``, each with likes from power-law chosen posts."""
    with connect(settings.pg) as conn:
        have = conn.execute("SELECT count(*) FROM posts").fetchone()
        start = int(have[0]) if have else 0
        if start == 0:
            conn.execute(
                "INSERT INTO users (id, handle, display_name) SELECT gen_random_uuid(), 'u' || i, 'User ' || i "
                "FROM generate_series(1, %s) AS i", (population,),
            )
        # authors: power law over users (the first ones write the most); likes: 1 to 16 a post, most get 1
        users = "WITH us AS (SELECT array_agg(id ORDER BY id) AS ids FROM users) "
        conn.execute(
            users + "INSERT INTO posts (id, author_id, body, topics) SELECT gen_random_uuid(), "
            "us.ids[1 + floor(%s * power(random(), 3))::int], 'post ' || i, ARRAY['t' || (i %% 50)] "
            "FROM us, generate_series(%s::int, %s::int) AS i",
            (population, start + 1, posts),
        )
        conn.execute(
            users + "INSERT INTO reactions (post_id, user_id, kind) "
            "SELECT p.id, us.ids[1 + floor(random() * %s)::int], 'like' FROM us, "
            "(SELECT id, 1 + floor(%s * power(random(), 4))::int AS k FROM posts po "
            " WHERE NOT EXISTS (SELECT 1 FROM reactions r WHERE r.post_id = po.id)) AS p "
            "CROSS JOIN LATERAL generate_series(1, p.k) ON CONFLICT DO NOTHING",
            (population, LIKES_PER_POST * 5),
        )
        conn.execute("ANALYZE")
        conn.commit()


def fill(settings: Settings, version: int) -> int:
    """Redis made equal to the projection's spec (every item Put at ``version``)."""
    store = open_raw_store(settings, "redis", 0)
    with connect(settings.pg) as conn:
        conn.autocommit = True
        source = PostgresSource(conn)
        with source.read():  # one snapshot
            items = list(RedisProjection(settings.redis.retention_days).spec_all(source))
    for start in range(0, len(items), 5_000):
        store.apply([Put(k, version, d) for k, d in items[start : start + 5_000]])
    store.close()
    return len(items)


def timed(call: Callable[[], object], n: int) -> tuple[float, float]:
    seconds = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t)
    seconds.sort()
    return statistics.median(seconds) * 1000, seconds[int(len(seconds) * 0.99) - 1] * 1000


def emptied(settings: Settings) -> None:
    """Capture stopped, every source table emptied and Redis's items dropped: the leaderboards' posts
    are written in SQL. The pipeline run's items carry source versions above the fills' 1 and 2, so
    its boards would otherwise stay beside the new ones (the version guard keeps the higher one)."""
    local.down(settings, ["capture"], say=lambda _line: None)
    with connect(settings.pg) as conn:
        conn.execute("TRUNCATE users CASCADE")
        conn.commit()
    store = open_raw_store(settings, "redis", 0)
    try:
        store.drop()
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projectors.bench.leaderboard", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="small sizes: a smoke run, no meaningful figures")
    parser.add_argument("--only", choices=("pipeline", "leaderboard"), help="run this part only (default: both)")
    args = parser.parse_args(argv)
    sizes, users, runs = ((1_000, 3_000), 300, (50, 10)) if args.tiny else ((10_000, 100_000), USERS, (500, 50))
    root = Path(tempfile.mkdtemp(prefix="projectors-bench-leaderboard-", dir="/tmp"))
    root.chmod(0o755)  # the postgres OS user traverses it
    # tiny: batches of 100 events, so that the worker's rate spans several batches
    settings = load_settings({**local.private_stack_env(root), **({"PROJECTORS_WORKER_BATCH_SIZE": "100"}
                                                                  if args.tiny else {})})
    local.up(settings, PARTS, say=lambda _line: None)
    client = ReadClient(settings)
    try:
        if args.only != "leaderboard":
            pipeline(settings, PIPELINE_TINY if args.tiny else PIPELINE, print)
        emptied(settings)
        today = datetime.now(UTC).date().isoformat()
        postgres = PostgresRedisReads(client._postgres)
        if args.only != "pipeline":
            print("leaderboard('authors', today, top 10): Redis sorted set vs the same answer from PostgreSQL")
        for version, posts in enumerate(sizes if args.only != "pipeline" else (), start=1):
            grow(settings, posts, users)
            items = fill(settings, version)
            redis_answer = client.leaderboard("authors", today, limit=10)
            pg_answer = postgres.leaderboard(settings, "authors", today, 10)
            assert redis_answer.source == "store" and list(redis_answer) == pg_answer, (
                f"Redis and PostgreSQL differ: Redis ({redis_answer.source}) {list(redis_answer)}, "
                f"PostgreSQL {pg_answer}"
            )
            r50, r99 = timed(lambda: client.leaderboard("authors", today, limit=10), runs[0])
            p50, p99 = timed(lambda: postgres.leaderboard(settings, "authors", today, 10), runs[1])
            print(
                f"  {posts:>7,} posts ({items:,} Redis items): Redis p50 {r50:.2f} ms p99 {r99:.2f} ms; "
                f"PostgreSQL p50 {p50:.2f} ms p99 {p99:.2f} ms; PostgreSQL/Redis p50 x{p50 / r50:.1f}"
            )
    finally:
        client.close()
        local.down(settings, local.ORDER, say=lambda _line: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
