"""Fan-out: feed writes per post against its author's follower count, and the time until every
feed has it."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from projectors.bench.config import BenchConfig, Say
from projectors.bench.private_stack import live_workers
from projectors.bench.report import FanoutRun, Results
from projectors.operations.caught_up import wait_for_pipeline
from projectors.projections.feed import feed_key, post_key
from projectors.read.client import commit_token
from projectors.settings import Settings
from projectors.stores.factory import open_raw_store
from projectors.workload import Population, celebrity_post


def fanout(settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say) -> None:
    """Each post's time to every feed is the time until the feed's consumer group committed past
    its commit (offsets are committed only after the store write), read from the broker and the
    replication slot, never from the store; its items are then counted once, by point reads of the
    keys the post can have (each follower's item, the author's own, the celebrity's one item): no
    store query, let alone a cross-partition one."""
    counts = population.follower_counts()
    feed = open_raw_store(settings, "feed")

    def reach(conn: psycopg.Connection[Any], author: Any, timeout_s: float = 600.0) -> tuple[int, float]:
        post_id, committed_at = celebrity_post(conn, author)
        token = commit_token(conn)
        waited = wait_for_pipeline(settings, ["feed"], time.monotonic() + timeout_s,
                                   sleep=lambda s: time.sleep(min(s, 0.1)), start_lsn=token)
        seconds = time.time() - committed_at
        if not waited["feed"].caught_up:
            say(f"   the feed did not apply the post within {timeout_s:.0f}s")
        followers = [str(r[0]) for r in conn.execute(FOLLOWERS, (author,)).fetchall()]
        keys = [feed_key(f, post_id) for f in [*followers, str(author)]] + [post_key(str(author), post_id)]
        return len(feed.read_items(keys)), seconds

    with live_workers(settings, ["feed"]), psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        quiet = min(counts, key=lambda u: (abs(counts[u] - 3), str(u)))
        reach(conn, quiet, timeout_s=120)  # the worker has joined and runs
        for wanted in config.fanout_followers:
            author = min(counts, key=lambda u: (abs(counts[u] - wanted), str(u)))
            followers = conn.execute("SELECT count(*) FROM follows WHERE followee_id = %s", (author,)).fetchone()
            writes, seconds = reach(conn, author)
            row = FanoutRun(followers=int(followers[0]) if followers else 0, feed_writes=writes,
                            seconds_to_every_feed=seconds)
            results.fanout.append(row)
            say(f"== fan-out: author with {row.followers} followers -> {writes} feed items in {seconds:.1f}s")
    feed.close()


FOLLOWERS = "SELECT follower_id FROM follows WHERE followee_id = %s"
