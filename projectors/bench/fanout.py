"""Fan-out: feed writes per post against its author's follower count, and the time until every
feed has it."""

from __future__ import annotations

import time

import psycopg

from projectors.bench.config import BenchConfig, Say
from projectors.bench.private_stack import live_workers
from projectors.bench.report import FanoutRun, Results
from projectors.runtime.store_factory import open_raw_store
from projectors.settings import Settings
from projectors.workload import Population, celebrity_post


def fanout(settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say) -> None:
    counts = population.follower_counts()
    feed = open_raw_store(settings, "feed")

    def reach(post_id: str, committed_at: float, timeout_s: float = 600.0) -> tuple[int, float]:
        """Feed items of the post once their count stops growing (10 s), and when it last grew."""
        last_count, last_change = 0, time.time()
        while time.time() - committed_at < timeout_s:
            # fanned out on write: one userFeed item per recipient; a celebrity's post: one feedPosts
            # item (merged into every follower's page on read) and the author's own item
            found = sum(len(feed.find_keys(c, {"postId": post_id})) for c in ("userFeed", "feedPosts"))
            if found != last_count:
                last_count, last_change = found, time.time()
            elif last_count and time.time() - last_change > 10.0:
                break
            time.sleep(0.25)
        return last_count, last_change - committed_at

    with live_workers(settings, ["feed"]), psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        quiet = min(counts, key=lambda u: (abs(counts[u] - 3), str(u)))
        reach(*celebrity_post(conn, quiet), timeout_s=120)  # the worker has joined and runs
        for wanted in config.fanout_followers:
            author = min(counts, key=lambda u: (abs(counts[u] - wanted), str(u)))
            followers = conn.execute("SELECT count(*) FROM follows WHERE followee_id = %s", (author,)).fetchone()
            writes, seconds = reach(*celebrity_post(conn, author))
            row = FanoutRun(followers=int(followers[0]) if followers else 0, feed_writes=writes,
                            seconds_to_every_feed=seconds)
            results.fanout.append(row)
            say(f"== fan-out: author with {row.followers} followers -> {writes} feed items in {seconds:.1f}s")
    feed.close()
