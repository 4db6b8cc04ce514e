"""The redis projection: what a change touches (pure), and on the real stack (PostgreSQL, Debezium, the
broker, its worker, a real redis-server with ACL users) its hashes and sorted sets equal an
independent computation from the raw rows after a power-law workload with back-dated days, survive a
replay from the earliest offsets, a SIGKILL of the worker and a restart of Redis, and readers may
only read."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis

from projectors.db.migrate import connect
from projectors.events.models import BlockRow, ChangeEvent, PostRow, ReactionRow, UserRow
from projectors.model import ItemKey, Put
from projectors.projections.redis_views import RedisProjection, window
from projectors.read.client import ReadClient
from projectors.stack.servers import Redis
from projectors.stores.factory import open_raw_store
from projectors.stores.redis_store import prefix_of, reader
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack, worker_part
from tests.operations.test_operators import assert_clean
from tests.pipeline.test_pipeline import wait_for

A = "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0a01"
P = "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0aff"


def change(table: str, op: str, row: Any) -> ChangeEvent:
    return ChangeEvent(table, op, row if op == "d" else None, None if op == "d" else row, 1)  # type: ignore[arg-type]


def test_a_change_touches_profiles_boards_and_days_from_its_rows_only() -> None:
    touched = RedisProjection().touched
    assert touched(change("users", "u", UserRow(id=A, handle="a"))) == [ItemKey("profile", A)]
    post = PostRow(id=P, author_id=A, topics=["kafka"], visibility="public", created_at="2026-12-06T23:59:59.5Z")
    assert touched(change("posts", "d", post)) == [
        ItemKey("profile", A), ("post", P, "2026-12-06"), ("author", A), ("topic", "kafka", "2026-12-06"),
        ("feed", A), ("followers", A),  # the feed pages held of the author and their followers
    ]
    # a new post has no likes yet: the author's like boards are not recounted
    assert ("author", A) not in touched(change("posts", "c", post))
    assert touched(change("blocks", "c", BlockRow(blocker_id=A, blocked_id=P))) == [("feed", A), ("feed", P)]
    # a reaction's delete holds its key only: the post's day and author are looked up when planned
    assert touched(change("reactions", "d", ReactionRow(post_id=P, user_id=A, kind="like"))) == [("post", P, None)]


def test_the_window_keeps_the_retention_days_and_today() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert window(now, 2) == ["2026-12-05", "2026-12-06", "2026-12-07"]


@pytest.fixture(scope="module")
def redis_stack() -> Iterator[StackHandle]:
    parts = ["postgres", "broker", "redis", "capture", "worker-redis"]
    with local_stack("projectors-redis-", parts, **QUICK_BATCHES) as handle:
        yield handle


def expected(handle: StackHandle) -> dict[str, Any]:
    """Every key the projection must hold, computed here in Python from the raw rows."""
    days = set(window(datetime.now(UTC), handle.settings.redis.retention_days))
    with connect(handle.settings.pg) as conn:
        users = conn.execute("SELECT id::text, handle::text, display_name, bio FROM users").fetchall()
        follows = conn.execute("SELECT follower_id::text, followee_id::text FROM follows").fetchall()
        posts = conn.execute("SELECT id::text, author_id::text, visibility, topics, created_at FROM posts").fetchall()
        reactions = conn.execute("SELECT post_id::text, kind, created_at FROM reactions").fetchall()
        replies = conn.execute("SELECT post_id::text FROM replies").fetchall()
    followers = Counter(b for _, b in follows)
    following = Counter(a for a, _ in follows)
    public = Counter(a for _, a, v, _, _ in posts if v == "public")
    out: dict[str, Any] = {
        f"profile:{u}": {"handle": h, "displayName": d, "bio": b, "followers": str(followers[u]),
                         "following": str(following[u]), "posts": str(public[u])}
        for u, h, d, b in users
    }
    author = {p: a for p, a, _, _, _ in posts}
    boards: dict[str, Counter[str]] = {}

    def add(board: str, member: str, n: int = 1) -> None:
        boards.setdefault(board, Counter())[member] += n

    for post_id, kind, at in reactions:
        if kind == "like":
            add("lb:authors:all", author[post_id])
            if (day := at.astimezone(UTC).date().isoformat()) in days:
                add(f"lb:authors:{day}", author[post_id])
    activity = Counter(p for p, _, _ in reactions) + Counter(p for (p,) in replies)
    for post_id, _, visibility, topics, at in posts:
        day = at.astimezone(UTC).date().isoformat()
        if visibility != "public" or day not in days:
            continue
        if activity[post_id]:
            add(f"lb:posts:{day}", post_id, activity[post_id])
        for topic in topics:
            add(f"lb:topics:{day}", topic)
    for board, counts in boards.items():
        out[board] = {m: float(n) for m, n in counts.items() if n > 0}
    return out


def held(handle: StackHandle) -> dict[str, Any]:
    """What the reader ACL user sees under the prefix of generation 0 (version records left out)."""
    return held_under(handle, f"{handle.settings.redis.prefix}:")


def held_under(handle: StackHandle, prefix: str) -> dict[str, Any]:
    client = reader(handle.settings, prefix)
    try:
        out: dict[str, Any] = {}
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            name = key.removeprefix(prefix)
            if name.startswith("profile:"):
                out[name] = client.hgetall(key)
            elif name.startswith("lb:"):
                out[name] = dict(client.zrange(key, 0, -1, withscores=True))
        return out
    finally:
        client.close()


def back_dated(handle: StackHandle, rng: random.Random) -> None:
    """Posts, likes and replies on earlier days: two days ago (in the window) and 30 days ago (out)."""
    with connect(handle.settings.pg) as conn:
        users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id").fetchall()]
        for age in (2, 2, 2, 30):
            author = rng.choice(users)
            row = conn.execute(
                "INSERT INTO posts (id, author_id, body, topics, visibility, created_at) VALUES "
                "(gen_random_uuid(), %s, 'old news', ARRAY['retro', 'kafka'], 'public', "
                "now() - make_interval(days => %s)) RETURNING id", (author, age),
            ).fetchone()
            assert row is not None
            for liker in rng.sample(users, 3):
                conn.execute(
                    "INSERT INTO reactions (post_id, user_id, kind, created_at) VALUES "
                    "(%s, %s, 'like', now() - make_interval(days => %s))", (row[0], liker, age),
                )
            conn.execute(
                "INSERT INTO replies (id, post_id, author_id, body) VALUES (gen_random_uuid(), %s, %s, 'late')",
                (row[0], rng.choice(users)),
            )
        conn.commit()


def test_redis_equals_the_source_after_a_workload_a_replay_a_kill_and_a_restart(redis_stack: StackHandle) -> None:
    with connect(redis_stack.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(35))
        load.seed(users=60, posts=150, follows=400)
        load.run(600)
        load.delete_user()
        conn.commit()
    back_dated(redis_stack, random.Random(7))
    assert_clean(redis_stack, ["redis"])
    want = expected(redis_stack)
    assert held(redis_stack) == want
    top = max(want["lb:authors:all"].values())
    assert top >= 5 and any(k.startswith("lb:topics:") and "retro" in v for k, v in want.items())

    # the reader may read, never write
    client = reader(redis_stack.settings, "")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.zadd(f"{redis_stack.settings.redis.prefix}:lb:authors:all", {"x": 1})
    finally:
        client.close()

    done = redis_stack.cli("replay", "redis", "--force", "--wait", "180", timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert_clean(redis_stack, ["redis"])
    assert held(redis_stack) == want

    # SIGKILL the worker while it works, restart Redis, start the worker again: nothing is lost
    worker = worker_part(redis_stack.settings, "redis")
    with connect(redis_stack.settings.pg) as conn:  # likes and new posts while the worker is killed
        conn.execute(
            "INSERT INTO reactions (post_id, user_id, kind) SELECT p.id, u.id, 'like' FROM "
            "(SELECT id FROM posts ORDER BY md5(id::text) LIMIT 30) p, (SELECT id FROM users LIMIT 8) u "
            "ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO posts (id, author_id, body, topics, visibility) SELECT gen_random_uuid(), id, 'fresh', "
            "ARRAY['kafka'], 'public' FROM users LIMIT 20"
        )
        conn.commit()
    pid = worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)
    server = Redis(redis_stack.settings)
    server.stop()
    server.start(60)
    worker.start(60)
    assert_clean(redis_stack, ["redis"])
    assert held(redis_stack) == expected(redis_stack)


def top(board: dict[str, float], limit: int) -> list[dict[str, Any]]:
    """Redis's ZREVRANGE order: the highest score first, then the member in reverse byte order."""
    ranked = sorted(board.items(), key=lambda mn: (mn[1], mn[0]), reverse=True)[:limit]
    return [{"member": m, "score": int(n)} for m, n in ranked]


def test_reads_come_from_redis_and_from_postgresql_while_redis_is_stopped(redis_stack: StackHandle) -> None:
    assert_clean(redis_stack, ["redis"])
    want = expected(redis_stack)
    today = datetime.now(UTC).date()
    days = [today.isoformat(), (today - timedelta(days=2)).isoformat(), (today - timedelta(days=30)).isoformat()]
    users = sorted(k.removeprefix("profile:") for k in want if k.startswith("profile:"))[:12]
    calls = [("authors", "all"), *[(kind, day) for kind in ("authors", "posts", "topics") for day in days]]
    answers = {
        (kind, day): top(want.get(f"lb:{kind}:{day}", {}), 10)
        for kind, day in calls
    }
    profiles = {
        u: {k: int(v) if k in ("followers", "following", "posts") else v for k, v in want[f"profile:{u}"].items()}
        for u in users
    }
    assert answers[("topics", days[1])][0]["member"] in ("kafka", "retro")  # the back-dated posts
    assert answers[("topics", days[2])] == []  # past the retention: expired in Redis, none in PostgreSQL

    client = ReadClient(redis_stack.settings)
    server = Redis(redis_stack.settings)
    try:
        for source in ("store", "postgres"):
            for kind, day in calls:
                page = client.leaderboard(kind, day, limit=10)
                assert (page.source, list(page)) == (source, answers[(kind, day)]), (kind, day)
            trending = client.trending_topics(limit=3)
            assert (trending.source, list(trending)) == (source, answers[("topics", days[0])][:3])
            found = client.profiles([*users, "not-a-uuid"])
            assert (found.source, dict(found)) == (source, profiles)
            server.stop()  # then every read again, from PostgreSQL
        assert client.fallbacks["redis"] == len(calls) + 2
    finally:
        client.close()
        server.start(60)


SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "projections" / "redis"


def test_a_rebuild_swaps_in_a_new_prefix_while_readers_read(redis_stack: StackHandle) -> None:
    assert_clean(redis_stack, ["redis"])
    want = top(expected(redis_stack)["lb:authors:all"], 10)
    client = ReadClient(redis_stack.settings)
    stop, seen = threading.Event(), []  # type: ignore[var-annotated]

    def read() -> None:
        while not stop.is_set():
            page = client.leaderboard("authors", "all", limit=10)
            seen.append((page.source, list(page) == want))

    reader_thread = threading.Thread(target=read)
    reader_thread.start()
    try:
        done = redis_stack.cli("rebuild", "redis", "--force", "--json", "--pause-timeout", "180", timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        stop.set()
        reader_thread.join()
        client.close()
    assert seen and all(s == ("store", True) for s in seen), Counter(seen)
    store = open_raw_store(redis_stack.settings, "redis")
    try:
        assert store.prefix == f"{redis_stack.settings.redis.prefix}-g1:"  # type: ignore[attr-defined]
        for collection in ("profile", "authorLikes", "hotPosts", "topics"):  # as the schemas say
            schema = json.loads((SCHEMAS / f"{collection}.json").read_text())
            items = list(store.live_items(collection))
            assert items, collection
            for _key, doc in items:
                jsonschema.validate(doc, schema)
    finally:
        store.close()
    assert_clean(redis_stack, ["redis"])
    assert held_under(redis_stack, f"{redis_stack.settings.redis.prefix}-g1:") == expected(redis_stack)


def test_the_first_feed_page_is_kept_in_redis_for_its_readers_only(redis_stack: StackHandle) -> None:
    settings = redis_stack.settings
    client = ReadClient(settings)
    prefix = prefix_of(settings.redis.prefix, client.generation("redis"))  # a rebuild may have run before
    with connect(settings.pg) as conn:  # the most followed author, and two of their followers
        SocialWorkload(conn, rng=random.Random(38)).seed(users=50, posts=200, follows=400)
        conn.commit()
        star, = conn.execute(
            "SELECT followee_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone() or ("",)
        fans = [r[0] for r in conn.execute(
            "SELECT follower_id::text FROM follows WHERE followee_id = %s ORDER BY 1 LIMIT 2", (star,)
        ).fetchall()]
    reader_id, idle_id = fans
    watcher = reader(settings, prefix)
    page_key, idle_key = f"{prefix}feed:{reader_id}", f"{prefix}feed:{idle_id}"

    def from_postgres(limit: int) -> Any:
        return client._postgres.feed_page(reader_id, limit + 1)[:limit]

    try:
        # a miss: answered without Redis (the feed's Cosmos is not part of this stack: PostgreSQL),
        # and the reader asks the worker for the page
        first = client.feed_page(reader_id, limit=20)
        assert first.source == "postgres" and list(first) == from_postgres(20)
        wait_for(lambda: watcher.exists(page_key), 60, "the worker writes the page asked for")
        hot = client.feed_page(reader_id, limit=20)
        assert hot.source == "store" and list(hot) == from_postgres(20) and len(hot) == 20
        assert hot.next_cursor == first.next_cursor  # the same page, so the same next page
        assert 0 < watcher.ttl(page_key) <= settings.redis.feed_page_ttl_s
        schema = json.loads((SCHEMAS / "feedPage.json").read_text())
        jsonschema.validate(json.loads(watcher.get(page_key).split("|", 1)[1]), schema)

        # a post of the author they follow refreshes the held page, and only the held one
        with connect(settings.pg) as conn:
            new_post, = conn.execute(
                "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES "
                "(gen_random_uuid(), %s, 'hot off the press', ARRAY['kafka'], 'public') RETURNING id::text", (star,),
            ).fetchone() or ("",)
            conn.commit()
        wait_for(lambda: new_post in watcher.get(page_key), 60, "the page refreshed with the new post")
        assert list(client.feed_page(reader_id, limit=50)) == from_postgres(50)
        assert client.feed_page(reader_id, limit=50).source == "store"
        assert not watcher.exists(idle_key)  # nobody reads it: never written
        # a block of the author takes their posts off the page
        with connect(settings.pg) as conn:
            conn.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES (%s, %s)", (reader_id, star))
            conn.commit()
        wait_for(lambda: new_post not in watcher.get(page_key), 60, "the page refreshed after the block")
        assert list(client.feed_page(reader_id, limit=50)) == from_postgres(50)
        assert all(item["authorId"] != star for item in client.feed_page(reader_id, limit=50))

        # the reader may extend a page's TTL and ask for one, nothing else
        with pytest.raises(redis.exceptions.NoPermissionError):
            watcher.set(page_key, "0|{}", keepttl=True)
        with pytest.raises(redis.exceptions.NoPermissionError):
            watcher.getex(f"{settings.redis.prefix}.generation", ex=1)

        # verify judges the held pages: a wrong one is found and repaired
        assert_clean(redis_stack, ["redis"])  # every change applied: no refresh comes after the damage
        worker_client = redis.Redis(
            host=settings.redis.host, port=settings.redis.port, username=settings.redis.worker_user,
            password=settings.redis.worker_password.get_secret_value(), decode_responses=True,
        )
        version = int(watcher.get(page_key).split("|", 1)[0])
        worker_client.set(page_key, f"{version}|" + json.dumps({"items": []}), keepttl=True)
        worker_client.close()
        found = redis_stack.cli("verify", "redis", "--full", "--json", timeout=300)
        assert found.returncode != 0 and '"wrong": 1' in found.stdout, found.stdout[-2000:]
        repaired = redis_stack.cli("verify", "redis", "--full", "--repair", timeout=300)
        assert repaired.returncode == 0, repaired.stdout[-2000:] + repaired.stderr[-2000:]
        assert_clean(redis_stack, ["redis"])
        assert list(client.feed_page(reader_id, limit=50)) == from_postgres(50)

        # replays never write an older page: the guard compares the stored version
        store = open_raw_store(settings, "redis")
        try:
            stale = store.apply([Put(ItemKey("feedPage", reader_id), 1, {"items": []})])
            assert stale.skipped_stale == 1 and list(client.feed_page(reader_id, limit=50)) == from_postgres(50)
        finally:
            store.close()
    finally:
        watcher.close()
        client.close()
