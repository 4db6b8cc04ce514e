"""The notifications projection end to end on the real local stack (PostgreSQL, capture, the broker,
the Cosmos REST server, the notifications worker): random activity at zero drift, the read client
against the PostgreSQL spec, grouping of many reactions, the block/mute/own-action rules, the unread
counter, and the same items with the same read state after two replays from earliest and a rebuild."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from projectors.db.migrate import connect
from projectors.operations.verify import verify_until_clean
from projectors.projections.notifications import COLLECTION, mark_read
from projectors.read.client import ReadClient
from projectors.read.fallback import PostgresReads
from projectors.stack import local
from projectors.stack.part import Part
from projectors.stores.factory import current_generation, open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack, worker_part

NAME = "notifications"


@pytest.fixture(scope="module")
def notif_stack() -> Iterator[StackHandle]:
    with local_stack("projectors-notif-", local.SERVERS, **QUICK_BATCHES) as handle:
        worker(handle).start(60)
        yield handle


def worker(handle: StackHandle) -> Part:
    return worker_part(handle.settings, NAME)


def assert_clean(handle: StackHandle, wait_s: float = 240) -> None:
    for r in verify_until_clean(handle.settings, [NAME], open_raw_store, wait_s=wait_s):
        assert r.total == 0, json.dumps(r.as_dict())[:3000]
        assert r.checked > 0


def live_content(handle: StackHandle) -> dict[Any, dict[str, Any]]:
    store = open_raw_store(handle.settings, NAME)
    try:
        return {k: dict(d) for k, d in store.live_items(COLLECTION)}
    finally:
        store.close()


def add_user(conn: psycopg.Connection[Any], name: str) -> str:
    uid = str(uuid.uuid4())
    conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (uid, f"{name}_{uid[:8]}"))
    return uid


def test_random_activity_rules_counter_replays_and_rebuild(notif_stack: StackHandle) -> None:
    handle = notif_stack
    with connect(handle.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(2121))
        load.seed(users=30, posts=40, follows=120)
        done = load.run(900)
        assert done["notification_reads.upsert"] > 0 and done["reactions.insert"] > 0 and done["replies.insert"] > 0
        conn.commit()
        for user in load.users[:6]:  # read state for certain (the workload's own reads are by chance)
            mark_read(conn, str(user))
        conn.commit()
        # a scene: one post with many reactions, own actions, a blocked, a muted and a blocking user
        author = add_user(conn, "author")
        post = str(uuid.uuid4())
        conn.execute("INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'hello')", (post, author))
        fans = [add_user(conn, f"fan{i}") for i in range(300)]
        conn.commit()
        for fan in fans:  # one transaction each: each reaction has its own time
            conn.execute("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, 'like')", (post, fan))
            conn.commit()
        conn.execute("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, 'love')", (post, author))
        conn.execute("INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, 'me')",
                     (str(uuid.uuid4()), post, author))
        blocked, muted, blocker = (add_user(conn, n) for n in ("blocked", "muted", "blocker"))
        conn.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES (%s, %s), (%s, %s)",
                     (author, blocked, blocker, author))
        conn.execute("INSERT INTO mutes (muter_id, muted_id) VALUES (%s, %s)", (author, muted))
        conn.commit()
        for who in (blocked, muted, blocker):
            conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (who, author))
            conn.execute("INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, 'hidden')",
                         (str(uuid.uuid4()), post, who))
        conn.commit()
        users = [str(u) for u in load.users[:12]] + [author]
    assert_clean(handle)

    reader = ReadClient(handle.settings)
    postgres = PostgresReads(handle.settings)
    try:
        # the store's answers are the PostgreSQL spec's, for every user
        for user in users:
            page = reader.notifications(user, limit=20)
            assert page.source == "store"
            assert list(page) == postgres.notifications(user, 20, False), user
            assert list(reader.notifications(user, limit=20, unread_only=True)) == postgres.notifications(
                user, 20, True)
            assert reader.unread_count(user) == postgres.unread_count(user)
        assert any(reader.unread_count(u) for u in users) and any(
            i["read"] for u in users for i in reader.notifications(u, limit=50))
        # many reactions: one item with the exact count and the latest three actors; no own action,
        # nothing from the blocked, muted or blocking users
        items = list(reader.notifications(author, limit=50))
        assert [(i["kind"], i["postId"], i["count"], i["actorIds"]) for i in items] == [
            ("reactions", post, 300, fans[::-1][:3])
        ]
        assert reader.unread_count(author) == 1
        assert reader.notifications(str(uuid.uuid4()), limit=5) == [] and reader.unread_count("nope") == 0
        # a block added later takes the blocked user's reactions out of the count
        with connect(handle.settings.pg) as conn:
            conn.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES (%s, %s)", (author, fans[-1]))
            conn.commit()
        assert_clean(handle)
        (item,) = reader.notifications(author, limit=50)
        assert item["count"] == 299 and item["actorIds"] == fans[::-1][1:4]
        # marking read is a write to PostgreSQL; the item and the counter follow
        with connect(handle.settings.pg) as conn:
            mark_read(conn, author, None)
            conn.commit()
        assert_clean(handle)
        assert reader.unread_count(author) == 0 and [i["read"] for i in reader.notifications(author, 5)] == [True]
        assert list(reader.notifications(author, 5, unread_only=True)) == []
        read_state = {u: {i["id"]: i["read"] for i in reader.notifications(u, limit=500)} for u in users}
        unread = {u: reader.unread_count(u) for u in users}
    finally:
        reader.close()
        postgres.close()

    content = live_content(handle)
    assert any(d["kind"] == "unreadNotifications" for d in content.values())
    for _ in range(2):  # Cosmos writes blind (a newer version of the same content): compared in full
        done_replay = handle.cli("replay", NAME, "--force", "--wait", "300", timeout=500)
        assert done_replay.returncode == 0, done_replay.stdout + done_replay.stderr
        assert_clean(handle)
        assert live_content(handle) == content
    before = current_generation(handle.settings, NAME)
    rebuilt = handle.cli("rebuild", NAME, "--force", "--json", timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert current_generation(handle.settings, NAME) == before + 1
    assert_clean(handle)
    assert live_content(handle) == content
    reader = ReadClient(handle.settings)
    try:
        assert {u: {i["id"]: i["read"] for i in reader.notifications(u, limit=500)} for u in users} == read_state
        assert {u: reader.unread_count(u) for u in users} == unread
    finally:
        reader.close()
