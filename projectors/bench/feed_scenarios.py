"""The scenarios of `projectors bench-feed` and what they measure with: the Cosmos servers' request
counts, waits for the workers, rows written by COPY."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from projectors.bench.feed_config import FEED_CONTAINERS, RU_PER_REQUEST, WORKERS, FeedBenchConfig, FeedResults, Say
from projectors.bench.private_stack import count_letters
from projectors.operations.verify import verify_until_clean
from projectors.projections import descriptor
from projectors.read.client import ReadClient
from projectors.runtime.stats import read_stats
from projectors.settings import Settings
from projectors.stack import local
from projectors.stores.factory import open_raw_store
from projectors.workload import SocialWorkload


def server_requests(settings: Settings) -> dict[str, dict[str, int]]:
    """What the local Cosmos servers (the feed's, the counters') served so far, by container and
    request kind."""
    data: dict[str, dict[str, int]] = {}
    for endpoint in dict.fromkeys(settings.cosmos.of(p).endpoint for p in ("feed", "counters", "notifications")):
        with urllib.request.urlopen(endpoint + "/_projectors/requests", timeout=10) as response:
            for container, kinds in json.loads(response.read()).items():
                mine = data.setdefault(container, {})
                for kind, n in kinds.items():
                    mine[kind] = mine.get(kind, 0) + int(n)
    return data


def requests_by_group(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The requests between two :func:`server_requests`, summed per projection (feed, counters)."""
    out: dict[str, dict[str, int]] = {"feed": {}, "counters": {}}
    for container, kinds in after.items():
        base = container.split("-g")[0]
        group = "feed" if base in FEED_CONTAINERS else "counters" if base == "counters" else None
        if group is None:
            continue
        for kind, n in kinds.items():
            added = n - before.get(container, {}).get(kind, 0)
            if added:
                out[group][kind] = out[group].get(kind, 0) + added
    return out


def request_units(kinds: dict[str, float]) -> float:
    """What the requests would cost on Azure; a refused one (``*_refused``: 404, 409, 412) about 1."""
    return sum((1.0 if k.endswith("_refused") else RU_PER_REQUEST.get(k, 1.0)) * n for k, n in kinds.items())


def events_seen(settings: Settings, name: str) -> int:
    return sum(int(s.get("events", 0)) for s in read_stats(settings, name))


def wait_events(settings: Settings, expected: dict[str, int], timeout_s: float) -> None:
    """Until each worker has consumed at least ``expected[name]`` records in all."""
    deadline = time.monotonic() + timeout_s
    while any(events_seen(settings, n) < want for n, want in expected.items()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not consume {expected} in {timeout_s:.0f}s")
        time.sleep(0.2)


def wait_idle(settings: Settings, names: tuple[str, ...], quiet_s: float, timeout_s: float) -> float:
    """Until each worker of ``names`` has committed the end of its topics (nothing left to do) and
    published nothing new for ``quiet_s``; the wall-clock time of their last applied batch."""
    from projectors.operations import offsets

    deadline = time.monotonic() + timeout_s
    topics = {n: descriptor(n).topics(settings) for n in names}
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stats = [s for n in names for s in read_stats(settings, n)]
        seen = sum(int(s.get("events", 0)) for s in stats)
        if seen != last:
            last, since = seen, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            done = True
            for n in names:
                ends = offsets.ends(settings, topics[n], idle_s=0.5)
                committed = offsets.committed(settings, descriptor(n).group)
                done = done and all(committed.get(tp, 0) >= end for tp, end in ends.items() if end > 0)
            if done:
                # no worker published yet (empty topics): nothing was applied, so idle since now
                return max((float(s.get("lastAppliedAt", 0.0)) for s in stats), default=time.time())
            since = time.monotonic()  # a batch still runs: look again after another quiet spell
        time.sleep(0.2)
    raise RuntimeError(f"workers {names} still busy after {timeout_s:.0f}s")


def clean_after(settings: Settings, names: list[str], wait_s: float) -> tuple[float, int]:
    """Seconds until the workers of ``names`` are done (from now) and ``verify`` is clean, and the
    drift left. The workers are watched by their committed offsets: a verify every few seconds
    meanwhile would load the local Cosmos server (a cross-partition read scans every container)."""
    started = time.monotonic()
    wait_idle(settings, tuple(names), 2.0, wait_s)
    _seconds, drift, _attempts = verify_clean(settings, names, 120.0)
    return time.monotonic() - started, drift


def verify_clean(settings: Settings, names: list[str], wait_s: float) -> tuple[float, int, int]:
    """Seconds until ``verify`` is clean for ``names`` (from now), the drift left, and how many
    verifications it took."""
    started = time.monotonic()
    attempts: list[int] = []
    results = verify_until_clean(settings, names, open_raw_store, wait_s=wait_s,
                                 on_attempt=lambda _r: attempts.append(1))
    return time.monotonic() - started, sum(r.total for r in results), len(attempts)


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def new_users(conn: psycopg.Connection[Any], n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    copy_rows(conn, "users", "id, handle, bio", [(u, f"b_{u.hex[:12]}", "bench") for u in ids])
    return ids


def post(conn: psycopg.Connection[Any], author: uuid.UUID, body: str = "bench post") -> uuid.UUID:
    pid = uuid.uuid4()
    conn.execute(
        "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, 'public')",
        (pid, author, body, ["bench"]),
    )
    return pid


# -- scenarios -----------------------------------------------------------------------------------------
def random_workload(settings: Settings, config: FeedBenchConfig, results: FeedResults, say: Say) -> None:
    with psycopg.connect(settings.pg.conninfo()) as conn:
        load = SocialWorkload(conn, rng=random.Random(config.seed_value))
        for _ in range(config.users):
            load.create_user()
        for _ in range(config.follows):
            load.follow()
        conn.commit()
        wait_idle(settings, WORKERS, 3.0, config.verify_wait_s)
        before = server_requests(settings)
        events_before = {n: events_seen(settings, n) for n in WORKERS}
        started = time.monotonic()
        done = load.run(config.operations)
        written_s = time.monotonic() - started
        last_write = time.time()
        row = conn.execute(
            "SELECT (SELECT count(*) FROM posts), (SELECT max(n) FROM (SELECT count(*) AS n FROM posts "
            "GROUP BY author_id) x), (SELECT max(n) FROM (SELECT count(*) AS n FROM follows GROUP BY followee_id) y)"
        ).fetchone()
    # the workers' own requests (verify's queries come after), and when they applied their last batch
    last_applied = wait_idle(settings, WORKERS, 5.0, config.verify_wait_s)
    used = requests_by_group(before, server_requests(settings))
    events = {n: events_seen(settings, n) - events_before[n] for n in WORKERS}
    _verified_s, drift, attempts = verify_clean(settings, list(WORKERS), config.verify_wait_s)
    # clean at the first verify: the store was right when the last batch was applied
    seconds = last_applied - last_write if attempts == 1 else time.time() - last_write
    results.random = {
        "operations": dict(done), "write_s": written_s, "seconds_to_clean": seconds, "drift": drift,
        "posts": row[0] if row else 0, "most_posts_by_one_author": row[1] if row else 0,
        "most_followers": row[2] if row else 0, "worker_events": events, "requests": used,
    }
    say(f"== random workload: {sum(done.values())} row changes in {written_s:.1f}s, clean {seconds:.1f}s "
        f"after the last write (drift {drift}); requests feed {used['feed']}, counters {used['counters']}")


def fanout(settings: Settings, config: FeedBenchConfig, results: FeedResults, say: Say) -> None:
    rng = random.Random(config.seed_value + 1)
    with psycopg.connect(settings.pg.conninfo()) as conn:
        author = new_users(conn, 1)[0]
        followers = new_users(conn, config.fanout_followers)
        copy_rows(conn, "follows", "follower_id, followee_id", [(f, author) for f in followers])
        conn.commit()
        caught_up, drift = clean_after(settings, ["feed"], config.verify_wait_s)
        say(f"== fan-out: {len(followers)} followers projected in {caught_up:.1f}s (drift {drift})")
        sample = rng.sample(followers, min(config.page_samples, len(followers)))
        reader = ReadClient(settings)
        try:
            pid = str(post(conn, author, "a celebrity speaks"))
            conn.commit()
            committed = time.monotonic()
            first = None
            while first is None and time.monotonic() - committed < 120:
                if any(i["postId"] == pid for i in reader.feed_page(str(sample[0]), 20)):
                    first = time.monotonic() - committed
                else:
                    time.sleep(0.05)
            missing = [f for f in sample if not any(i["postId"] == pid for i in reader.feed_page(str(f), 20))]
            every = time.monotonic() - committed
        finally:
            reader.close()
    results.fanout = {"followers": len(followers), "seconds_to_first_page": first, "sampled_pages": len(sample),
                      "sampled_pages_missing_it": len(missing), "seconds_to_every_sampled_page": every}
    say(f"== fan-out: a post by an author with {len(followers)} followers on a follower's page in "
        f"{first if first is not None else float('nan'):.2f}s; all {len(sample)} sampled pages checked by "
        f"{every:.2f}s, {len(missing)} without it")


def follow(settings: Settings, config: FeedBenchConfig, results: FeedResults, say: Say) -> None:
    with psycopg.connect(settings.pg.conninfo()) as conn:
        author, fan = new_users(conn, 2)
        base = time.time() - 10 * config.follow_author_posts
        rows = [(uuid.uuid4(), author, f"post {i}", ["bench"], "public", time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(base + 10 * i)) + "Z") for i in range(config.follow_author_posts)]
        copy_rows(conn, "posts", "id, author_id, body, topics, visibility, created_at", rows)
        conn.commit()
        caught_up, drift = clean_after(settings, ["feed"], config.verify_wait_s)
        say(f"== follow: {len(rows)} posts projected in {caught_up:.1f}s (drift {drift})")
        newest = [str(r[0]) for r in reversed(rows)][:50]
        reader = ReadClient(settings)
        feed = reader._db("feed").get_container_client("userFeed")
        try:
            conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (fan, author))
            conn.commit()
            committed = time.monotonic()
            page_s = every_s = None
            while time.monotonic() - committed < 600 and every_s is None:
                if page_s is None and [i["postId"] for i in reader.feed_page(str(fan), 50)] == newest:
                    page_s = time.monotonic() - committed
                count: list[Any] = list(feed.query_items(
                    "SELECT VALUE COUNT(1) FROM c WHERE c.recipientId = @r AND c.deleted = false",
                    parameters=[{"name": "@r", "value": str(fan)}], partition_key=str(fan)))
                if count and int(count[0]) >= len(rows) and page_s is not None:
                    every_s = time.monotonic() - committed
                else:
                    time.sleep(0.05)
        finally:
            reader.close()
    results.follow = {"author_posts": len(rows), "seconds_to_first_page": page_s, "seconds_to_every_item": every_s}
    say(f"== follow: an author with {len(rows)} posts: first page right in {page_s}s, every item in {every_s}s")


def per_event_kind(settings: Settings, config: FeedBenchConfig, results: FeedResults, say: Say) -> None:
    """Requests per event of each kind (k operations each, the workers caught up in between)."""
    rng = random.Random(config.seed_value + 2)
    with psycopg.connect(settings.pg.conninfo()) as conn:
        authors = new_users(conn, 2)
        fans = new_users(conn, 10 + 6 * config.per_kind)
        copy_rows(conn, "follows", "follower_id, followee_id", [(f, authors[0]) for f in fans[:10]])
        conn.commit()
        posts = [post(conn, authors[0]) for _ in range(4 * config.per_kind)]
        conn.commit()
        clean_after(settings, list(WORKERS), config.verify_wait_s)
        spare = iter(fans[10:])
        k = config.per_kind

        def each(sql: str, values: list[tuple[Any, ...]]) -> None:
            for v in values:
                conn.execute(sql, v)
                conn.commit()

        kinds: list[tuple[str, Callable[[], None], dict[str, int]]] = [
            ("post created (10 followers)", lambda: each(
                "INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, 'p', '{}')",
                [(uuid.uuid4(), authors[0]) for _ in range(k)]), {"feed": k, "counters": k}),
            ("post edited", lambda: each("UPDATE posts SET body = body || '!' WHERE id = %s",
                                         [(p,) for p in posts[:k]]), {"feed": k, "counters": k}),
            ("post made private", lambda: each("UPDATE posts SET visibility = 'private' WHERE id = %s",
                                               [(p,) for p in posts[k : 2 * k]]), {"feed": k, "counters": k}),
            ("post deleted", lambda: each("DELETE FROM posts WHERE id = %s", [(p,) for p in posts[2 * k : 3 * k]]),
             {"feed": 2 * k, "counters": 2 * k}),
            ("follow", lambda: each("INSERT INTO follows VALUES (%s, %s)",
                                    [(next(spare), authors[0]) for _ in range(k)]), {"feed": k, "counters": k}),
            ("unfollow", lambda: each("DELETE FROM follows WHERE follower_id = %s AND followee_id = %s",
                                      [(f, authors[0]) for f in fans[:k]]), {"feed": 2 * k, "counters": 2 * k}),
            ("block", lambda: each("INSERT INTO blocks VALUES (%s, %s)", [(authors[0], f) for f in fans[k : 2 * k]]),
             {"feed": k}),
            ("mute", lambda: each("INSERT INTO mutes VALUES (%s, %s)", [(next(spare), authors[0]) for _ in range(k)]),
             {"feed": k}),
            ("like", lambda: each("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, 'like')",
                                  [(rng.choice(posts[3 * k :]), next(spare)) for _ in range(k)]), {"counters": k}),
            ("reply", lambda: each("INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, 'r')",
                                   [(uuid.uuid4(), rng.choice(posts[3 * k :]), next(spare)) for _ in range(k)]),
             {"counters": k}),
        ]
        for name, act, records in kinds:
            before = server_requests(settings)
            seen = {n: events_seen(settings, n) for n in WORKERS}
            act()
            wait_events(settings, {n: seen[n] + records.get(n, 0) for n in WORKERS}, 300)
            time.sleep(1.0)  # the batch's writes end after its events are counted
            used = requests_by_group(before, server_requests(settings))
            results.requests[name] = {group: {kind: n / k for kind, n in kinds_.items()}
                                      for group, kinds_ in used.items()}
            say(f"== requests per event, {name}: " + "; ".join(
                f"{g} " + ", ".join(f"{kind} {n:.1f}" for kind, n in sorted(v.items()))
                for g, v in results.requests[name].items() if v))


def drill(settings: Settings, config: FeedBenchConfig, results: FeedResults, say: Say) -> None:
    """SIGSTOP the Cosmos server in the middle of a large batch (a post reaching 900 feeds)."""
    cosmos = local.parts(settings, ["cosmos"])[0]
    pid = cosmos.pid()
    assert pid is not None
    letters_before = count_letters(settings, "feed")
    with psycopg.connect(settings.pg.conninfo()) as conn:
        author = new_users(conn, 1)[0]
        followers = new_users(conn, min(900, config.celebrity_followers - 1))
        copy_rows(conn, "follows", "follower_id, followee_id", [(f, author) for f in followers])
        conn.commit()
        clean_after(settings, ["feed"], config.verify_wait_s)
        seen = events_seen(settings, "feed")
        for _ in range(3):
            post(conn, author)
        conn.commit()
        time.sleep(0.3)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            time.sleep(config.stop_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        say(f"== drill: Cosmos server stopped {time.monotonic() - stopped:.0f}s mid-batch, resumed")
        wait_events(settings, {"feed": seen + 3}, config.verify_wait_s)
        seconds, drift = clean_after(settings, ["feed", "counters"], config.verify_wait_s)
    letters = count_letters(settings, "feed") - letters_before
    results.drill = {"stopped_s": config.stop_s, "seconds_to_clean_after_resume": seconds, "drift": drift,
                     "dead_letters": letters}
    say(f"== drill: clean {seconds:.1f}s after the resume, drift {drift}, dead letters {letters}")
