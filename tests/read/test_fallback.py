"""Read services never get an exception because one store does not answer: `ReadClient` answers
from PostgreSQL instead (the same answers, marked as such), within its bound, on the real stack."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from projectors.db.migrate import connect
from projectors.read.client import ReadClient, ReadUnavailable
from projectors.stack.processes import PART_CLASSES
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle, free_port, local_stack
from tests.operations.test_operators import assert_clean


@pytest.fixture(scope="module")
def read_stack() -> Iterator[StackHandle]:
    with local_stack("projectors-read-") as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(71))
            load.seed(users=30, posts=40, follows=150)
            load.run(150)
        assert_clean(handle, ["feed", "counters", "graph", "search"])
        yield handle


@contextlib.contextmanager
def frozen(handle: StackHandle, part: str) -> Iterator[None]:
    """The part's processes stopped (SIGSTOP to its process group: a worker's supervisor and the
    faust worker it runs alike): it accepts connections and never answers."""
    pid = PART_CLASSES[part](handle.settings).pid()
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def people(handle: StackHandle) -> tuple[list[str], list[str]]:
    with connect(handle.settings.pg) as conn:
        users = [r[0] for r in conn.execute(
            "SELECT follower_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 8").fetchall()]
        posts = [r[0] for r in conn.execute("SELECT id::text FROM posts ORDER BY id LIMIT 10").fetchall()]
    return users, posts


def test_feed_counters_and_suggestions_come_from_postgres_while_their_stores_hang(read_stack: StackHandle) -> None:
    users, posts = people(read_stack)
    # a bound well above a loaded machine's slowest store answer: only the frozen stores fall back
    # the feed from Cosmos alone (no first pages from Redis): Cosmos is the store that hangs here
    client = ReadClient(read_stack.with_env(PROJECTORS_READ_STORE_TIMEOUT_S="4", PROJECTORS_REDIS_FEED_PAGE_SIZE="0"))
    try:
        feeds = {u: client.feed_page(u, limit=20) for u in users}
        counts = client.counters(users + posts + ["not-a-uuid"])
        suggested = {u: client.suggestions(u, limit=50) for u in users}
        assert {f.source for f in feeds.values()} == {"store"} and counts.source == "store"
        assert sum(map(len, feeds.values())) > 20 and any(suggested.values())  # worth comparing
        with frozen(read_stack, "cosmos"), frozen(read_stack, "cosmos-counters"), frozen(read_stack, "falkordb"):
            fallback_feeds = {u: client.feed_page(u, limit=20) for u in users}
            fallback_counts = client.counters(users + posts + ["not-a-uuid"])
            fallback_suggested = {u: client.suggestions(u, limit=50) for u in users}
        assert {f.source for f in fallback_feeds.values()} == {"postgres"} and fallback_counts.source == "postgres"
        assert {s.source for s in fallback_suggested.values()} == {"postgres"}
        # the same answers, item for item
        assert {u: list(f) for u, f in fallback_feeds.items()} == {u: list(f) for u, f in feeds.items()}
        assert dict(fallback_counts) == dict(counts)
        assert {u: list(s) for u, s in fallback_suggested.items()} == {u: list(s) for u, s in suggested.items()}
        assert client.fallbacks == {"feed": len(users), "counters": 1, "graph": len(users)}, client.fallbacks
        # the stores answer again: so does the client, from them (once the thawed server has worked
        # through the requests queued while it was frozen)
        sources = []
        for _ in range(10):
            sources.append(client.counters(users).source)
            if sources[-1] == "store":
                break
            time.sleep(2)
        assert sources[-1] == "store", sources
    finally:
        client.close()


def test_search_comes_from_postgres_when_its_store_fails(read_stack: StackHandle) -> None:
    local_search = ReadClient(read_stack.settings)
    down = ReadClient(read_stack.with_env(
        PROJECTORS_SEARCH_BACKEND="meilisearch", PROJECTORS_SEARCH_MEILI_URL=f"http://127.0.0.1:{free_port()}",
        PROJECTORS_READ_STORE_TIMEOUT_S="3",
    ))
    try:
        # "kafka" is a topic, never a word of a seeded body: the fallback searches the topics too
        for index, query in (("posts", "stream"), ("posts", "kafka"), ("posts", ""), ("users", "")):
            stored = local_search.search(index, query, limit=500)
            answered = down.search(index, query, limit=500)
            assert stored.source == "store" and answered.source == "postgres"
            assert stored and sorted(d["id"] for d in answered) == sorted(d["id"] for d in stored), (index, query)
            assert {d["id"]: d for d in answered} == {d["id"]: d for d in stored}
    finally:
        local_search.close()
        down.close()


def test_cosmos_reads_hold_the_read_only_key(read_stack: StackHandle) -> None:
    """A read service holds Cosmos's read-only key alone (``PROJECTORS_COSMOS_READ_KEY``): with the
    account key unusable (not even base64) counters, the unread count and items by key still come
    from their stores, and the counters are the same as the writers' key reads."""
    users, posts = people(read_stack)
    key = read_stack.settings.cosmos.key.get_secret_value()
    reader = ReadClient(read_stack.with_env(
        PROJECTORS_COSMOS_KEY="not a key!", PROJECTORS_COSMOS_READ_KEY=key, PROJECTORS_READ_FALLBACK="false",
    ))
    client = ReadClient(read_stack.settings)
    try:
        counts = reader.counters(users + posts)
        assert counts.source == "store" and dict(counts) == dict(client.counters(users + posts))
        assert all(counts[u] for u in users) and all(counts[p] for p in posts)
        assert reader.unread_count(users[0]) == client.unread_count(users[0])
    finally:
        reader.close()
        client.close()


def test_with_postgres_down_too_the_error_names_both(read_stack: StackHandle) -> None:
    users, _posts = people(read_stack)
    client = ReadClient(read_stack.with_env(PROJECTORS_READ_STORE_TIMEOUT_S="1", PROJECTORS_PG_PORT=str(free_port()),
                                            PROJECTORS_READ_FALLBACK_TIMEOUT_S="2"))
    try:
        counters_down = pytest.raises(ReadUnavailable, match=r"counters store .* PostgreSQL")
        with frozen(read_stack, "cosmos-counters"), counters_down:
            client.counters(users)
    finally:
        client.close()


def test_a_read_with_the_writers_token_sees_the_write(read_stack: StackHandle) -> None:
    """Read-your-writes: a post, then at once a read of the author's feed, counters and search with
    the commit's token: every read includes it (the read waited for capture and the workers)."""
    import uuid

    from projectors.read.client import commit_token

    users, _posts = people(read_stack)
    author = users[0]
    client = ReadClient(read_stack.settings)
    try:
        for round_ in range(3):
            post = str(uuid.uuid4())
            with connect(read_stack.settings.pg) as conn:
                before = client.counters([author])[author]["posts"]
                conn.execute(
                    "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, 'public')",
                    (post, author, f"read your writes zebra{round_}", ["ryw"]),
                )
                conn.commit()
                token = commit_token(conn)
            page = client.feed_page(author, limit=5, after=token)
            assert page.caught_up is True and post in [i["postId"] for i in page], (round_, list(page))
            counts = client.counters([author], after=token)
            assert counts.caught_up is True and counts[author]["posts"] == before + 1
            hits = client.search("posts", f"zebra{round_}", after=token)
            assert hits.caught_up is True and [h["id"] for h in hits] == [post]
        assert client.feed_page(author, limit=5).caught_up is None  # no token: no wait
    finally:
        client.close()


VISIBLE_FOLLOW = """
SELECT f.follower_id::text, f.followee_id::text FROM follows f
WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id, b.blocked_id) IN
                  ((f.follower_id, f.followee_id), (f.followee_id, f.follower_id)))
  AND NOT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = f.follower_id AND m.muted_id = f.followee_id)
ORDER BY 1, 2 LIMIT 1
"""


def test_a_projection_too_far_behind_is_read_from_postgres_until_it_caught_up(read_stack: StackHandle) -> None:
    """With PROJECTORS_READ_MAX_BEHIND_S set, a feed whose worker stopped applying is answered from
    PostgreSQL (with the post its store does not have yet) once it is that far behind, and from its
    store again once the worker caught up."""
    client = ReadClient(read_stack.with_env(PROJECTORS_READ_MAX_BEHIND_S="3", PROJECTORS_READ_MAX_BEHIND_CHECK_S="0.5",
                                            PROJECTORS_READ_STORE_TIMEOUT_S="4", PROJECTORS_REDIS_FEED_PAGE_SIZE="0"))
    try:
        with connect(read_stack.settings.pg) as conn:
            reader, author = conn.execute(VISIBLE_FOLLOW).fetchone() or ("", "")
        assert reader and client.feed_page(reader, limit=20).source == "store"
        post = str(uuid.uuid4())
        with frozen(read_stack, "worker-feed"):
            with connect(read_stack.settings.pg) as conn:
                conn.execute("INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'behind')", (post, author))
            deadline = time.monotonic() + 90
            page = client.feed_page(reader, limit=20)
            while page.source != "postgres" and time.monotonic() < deadline:
                time.sleep(0.5)
                page = client.feed_page(reader, limit=20)
            assert page.source == "postgres" and post in [i["postId"] for i in page], (page.source, list(page))
            assert client.fallbacks["feed"] >= 1
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # thawed: the worker applies the post, reads go to the store
            page = client.feed_page(reader, limit=20)
            if page.source == "store" and post in [i["postId"] for i in page]:
                break
            time.sleep(1.0)
        assert page.source == "store" and post in [i["postId"] for i in page], (page.source, list(page))
    finally:
        client.close()
