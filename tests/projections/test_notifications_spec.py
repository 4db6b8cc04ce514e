"""The notifications spec on a real PostgreSQL: grouping, the block/mute/own-action rules, read state,
the unread counter and expiry at a given time, against hand-made scenes and an independent Python
reference over random activity."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from projectors.db.migrate import migrate
from projectors.events.decode import decode
from projectors.model import Document, ItemKey, Put
from projectors.projections import capture_tables
from projectors.projections.notifications import (
    NotificationsProjection,
    item_key,
    mark_read,
    unread_at,
    unread_key,
)
from projectors.settings import PostgresSettings
from projectors.source import PostgresSource
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle

DAY = timedelta(days=1)


@pytest.fixture()
def pg(stack: StackHandle) -> Iterator[PostgresSettings]:
    settings = stack.settings.pg.model_copy(update={"database": f"notif_{uuid.uuid4().hex[:10]}"})
    migrate(settings, "notif_pub", capture_tables(stack.settings.capture))
    yield settings


def spec_all(pg: PostgresSettings, at: datetime | None = None) -> dict[ItemKey, Document]:
    with psycopg.connect(pg.conninfo()) as conn:
        return dict(NotificationsProjection(at=at).spec_all(PostgresSource(conn)))


def spec_for(pg: PostgresSettings, keys: set[ItemKey], at: datetime | None = None) -> dict[ItemKey, Document]:
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        return dict(NotificationsProjection(at=at).spec_for(keys, PostgresSource(conn)))


class Scene:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.ids: dict[str, str] = {}

    def user(self, name: str) -> str:
        self.ids[name] = str(uuid.uuid4())
        self.conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (self.ids[name], name))
        return self.ids[name]

    def post(self, name: str, author: str) -> str:
        self.ids[name] = str(uuid.uuid4())
        self.conn.execute(
            "INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'b')", (self.ids[name], self.ids[author])
        )
        return self.ids[name]

    def react(self, post: str, who: str, at: datetime, kind: str = "like") -> None:
        self.conn.execute(
            "INSERT INTO reactions (post_id, user_id, kind, created_at) VALUES (%s, %s, %s, %s)",
            (self.ids[post], self.ids[who], kind, at),
        )

    def reply(self, post: str, who: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO replies (id, post_id, author_id, body, created_at) VALUES (%s, %s, %s, 'r', %s)",
            (str(uuid.uuid4()), self.ids[post], self.ids[who], at),
        )

    def follow(self, who: str, whom: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (%s, %s, %s)",
            (self.ids[who], self.ids[whom], at),
        )

    def rel(self, table: str, a: str, b: str) -> None:
        self.conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (self.ids[a], self.ids[b]))


def test_rules_grouping_read_state_and_counter(pg: PostgresSettings) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        for name in ("me", "alice", "bob", "carol", "dave", "muted", "blocked", "blocker"):
            s.user(name)
        s.post("p", "me")
        s.post("q", "me")
        s.rel("mutes (muter_id, muted_id)", "me", "muted")
        s.rel("blocks (blocker_id, blocked_id)", "me", "blocked")
        s.rel("blocks (blocker_id, blocked_id)", "blocker", "me")
        for i, who in enumerate(("alice", "bob", "carol", "dave")):
            s.react("p", who, t0 + timedelta(minutes=i))
        s.react("p", "alice", t0 + timedelta(minutes=10), kind="love")  # alice again: the latest, counted once
        s.react("p", "me", t0 + timedelta(minutes=20))  # own action: never
        for who in ("muted", "blocked", "blocker"):
            s.react("p", who, t0 + timedelta(minutes=30))
            s.follow(who, "me", t0)
            s.reply("q", who, t0)
        s.reply("q", "bob", t0 + timedelta(minutes=1))
        s.reply("q", "bob", t0 + timedelta(minutes=2))
        s.reply("q", "me", t0 + timedelta(minutes=3))
        s.follow("carol", "me", t0 + timedelta(minutes=5))
        s.follow("me", "dave", t0 + timedelta(minutes=6))  # dave's notification, not mine
        conn.commit()
        ids = s.ids
    at = t0 + DAY
    spec = spec_all(pg, at)
    me, p, q = ids["me"], ids["p"], ids["q"]
    reactions = spec[item_key(me, "reactions", p)]
    assert reactions == {
        "id": f"{me}:reactions:{p}", "recipientId": me, "kind": "reactions", "postId": p,
        "actorIds": [ids["alice"], ids["dave"], ids["carol"]], "count": 4,
        "latestAt": "2030-01-01T00:10:00.000000Z", "expiresAt": "2030-01-31T00:10:00.000000Z", "read": False,
    }
    replies = spec[item_key(me, "replies", q)]
    assert replies["count"] == 1 and replies["actorIds"] == [ids["bob"]]
    assert replies["latestAt"] == "2030-01-01T00:02:00.000000Z"
    follow = spec[item_key(me, "follow", ids["carol"])]
    assert (follow["actorIds"], follow["postId"], follow["count"]) == ([ids["carol"]], None, 1)
    mine = {k for k in spec if k.partition == me}
    assert mine == {item_key(me, "reactions", p), item_key(me, "replies", q), item_key(me, "follow", ids["carol"]),
                    unread_key(me)}
    assert {k for k in spec if k.partition != me} == {item_key(ids["dave"], "follow", me), unread_key(ids["dave"])}
    assert spec[unread_key(me)]["count"] == 3 and unread_at(spec[unread_key(me)], at) == 3

    # reading up to the follow: the follow and the replies are read; the reactions (newer) are not
    with psycopg.connect(pg.conninfo()) as conn:
        mark_read(conn, me, t0 + timedelta(minutes=5))
        mark_read(conn, me, t0)  # never backwards
        conn.commit()
    spec = spec_all(pg, at)
    assert [spec[item_key(me, k, x)]["read"] for k, x in (("follow", ids["carol"]), ("replies", q), ("reactions", p))] \
        == [True, True, False]
    counter = spec[unread_key(me)]
    assert counter["count"] == 1 and counter["unreadExpiresAt"] == ["2030-01-31T00:10:00.000000Z"]
    # the key-restricted read (what the worker uses) agrees, and ids that are not items are absent
    asked = set(spec) | {item_key(me, "follow", ids["bob"]), item_key(me, "reactions", q),
                         ItemKey("notifications", f"{me}:likes:{p}", me),
                         ItemKey("notifications", f"{me}:follow:x", me),
                         ItemKey("notifications", f"{me}:reactions:{p}", ids["alice"])}
    assert spec_for(pg, asked, at) == spec

    # unblock and unmute: they count again; own actions still do not
    with psycopg.connect(pg.conninfo()) as conn:
        conn.execute("DELETE FROM blocks")
        conn.execute("DELETE FROM mutes")
        conn.commit()
    spec = spec_all(pg, at)
    assert spec[item_key(me, "reactions", p)]["count"] == 7
    assert spec[item_key(me, "reactions", p)]["actorIds"] == sorted([ids[w] for w in ("muted", "blocked", "blocker")],
                                                                   reverse=True)
    assert spec[item_key(me, "replies", q)]["count"] == 4
    assert ids["me"] not in spec[item_key(me, "reactions", p)]["actorIds"]


def test_items_expire_thirty_days_after_their_latest_activity(pg: PostgresSettings) -> None:
    t0 = datetime(2030, 3, 1, tzinfo=UTC)
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        for name in ("me", "a", "b"):
            s.user(name)
        s.post("p", "me")
        s.react("p", "a", t0)
        s.follow("a", "me", t0)
        s.follow("b", "me", t0 + 10 * DAY)
        conn.commit()
        ids = s.ids
    me = ids["me"]
    reactions, old, new = item_key(me, "reactions", ids["p"]), item_key(me, "follow", ids["a"]), item_key(
        me, "follow", ids["b"])
    before = spec_all(pg, t0 + 30 * DAY - timedelta(seconds=1))
    assert {reactions, old, new, unread_key(me)} == set(before)
    assert before[unread_key(me)]["count"] == 3
    after = spec_all(pg, t0 + 30 * DAY)
    assert set(after) == {new, unread_key(me)} and after[unread_key(me)]["count"] == 1
    assert spec_for(pg, set(before), t0 + 30 * DAY) == after
    assert spec_all(pg, t0 + 40 * DAY) == {}
    # new activity on the post: the grouped item exists again, its expiry moved, its count exact
    with psycopg.connect(pg.conninfo()) as conn:
        s_for(conn, ids).react("p", "b", t0 + 35 * DAY)
        conn.commit()
    again = spec_all(pg, t0 + 40 * DAY)
    assert again[reactions]["count"] == 2 and again[reactions]["expiresAt"] == "2030-05-05T00:00:00.000000Z"
    # the counter as judged later: the unread items left at that time
    counter = before[unread_key(me)]
    assert unread_at(counter, t0 + 30 * DAY) == 1 and unread_at(counter, t0 + 40 * DAY) == 0
    projection = NotificationsProjection(margin=timedelta(minutes=10))
    assert projection.judged(counter, t0 + 30 * DAY) is None  # two expire right then: not judged
    judged = projection.judged(counter, t0 + 31 * DAY)
    assert judged is not None and judged["count"] == 1 and judged == after[unread_key(me)]
    assert projection.judged(before[old], t0 + 30 * DAY - timedelta(minutes=5)) is None
    assert projection.judged(before[old], t0 + 29 * DAY) == before[old]


def s_for(conn: psycopg.Connection[Any], ids: dict[str, str]) -> Scene:
    scene = Scene(conn)
    scene.ids = ids
    return scene


def test_a_post_with_many_reactions_is_one_item_with_the_exact_count(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        s.user("author")
        s.post("p", "author")
        fans = [s.user(f"fan{i}") for i in range(300)]
        for i in range(300):
            s.react("p", f"fan{i}", datetime.now(UTC) - timedelta(hours=1, seconds=300 - i))
        conn.commit()
    spec = spec_all(pg)
    author = s.ids["author"]
    assert set(spec) == {item_key(author, "reactions", s.ids["p"]), unread_key(author)}
    item = spec[item_key(author, "reactions", s.ids["p"])]
    assert item["count"] == 300 and item["actorIds"] == fans[::-1][:3]
    assert spec[unread_key(author)]["count"] == 1


def test_the_spec_matches_an_independent_reference_over_random_activity(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        load = SocialWorkload(conn, rng=random.Random(21))
        load.seed(users=25, posts=40, follows=150)
        load.run(900)
        q = conn.execute
        author = {str(p): str(a) for p, a in q("SELECT id, author_id FROM posts")}
        hidden = {(str(a), str(b)) for a, b in q("SELECT blocker_id, blocked_id FROM blocks")}
        hidden |= {(b, a) for a, b in hidden} | {(str(a), str(b)) for a, b in q("SELECT muter_id, muted_id FROM mutes")}
        read = {str(u): t for u, t in q("SELECT user_id, read_up_to FROM notification_reads")}
        acts: dict[tuple[str, str, str], dict[str, datetime]] = {}
        for kind, sql in (("reactions", "SELECT post_id, user_id, created_at FROM reactions"),
                          ("replies", "SELECT post_id, author_id, created_at FROM replies")):
            for post, who, at in q(sql):
                r, a = author[str(post)], str(who)
                if a != r and (r, a) not in hidden:
                    times = acts.setdefault((r, kind, str(post)), {})
                    times[a] = max(times.get(a, at), at)
        for follower, followee, at in q("SELECT follower_id, followee_id, created_at FROM follows"):
            if (str(followee), str(follower)) not in hidden:
                acts[(str(followee), "follow", str(follower))] = {str(follower): at}
    assert read, "the workload marks notifications read"
    expected: dict[ItemKey, tuple[int, list[str], bool]] = {}
    unread: dict[str, int] = {}
    for (r, kind, subject), times in acts.items():
        latest = max(times.values())
        ordered = sorted(times, key=lambda a: (times[a], a), reverse=True)
        is_read = r in read and read[r] >= latest
        expected[item_key(r, kind, subject)] = (len(times), ordered[:3], is_read)
        unread[r] = unread.get(r, 0) + (not is_read)
    spec = spec_all(pg)
    items = {k: (d["count"], d["actorIds"], d["read"]) for k, d in spec.items() if d["kind"] != "unreadNotifications"}
    assert items == expected
    assert any(c > 3 for c, _, _ in items.values()) and any(r for _, _, r in items.values())
    counters = {k.partition: d["count"] for k, d in spec.items() if d["kind"] == "unreadNotifications"}
    assert counters == {r: n for r, n in unread.items() if n}


def reaction_envelope(post: str, user: str, at: datetime, lsn: int, op: str = "c") -> bytes:
    row = {"post_id": post, "user_id": user, "kind": "like", "created_at": at.isoformat().replace("+00:00", "Z")}
    return json.dumps({"op": op, "before": None if op == "c" else row, "after": row if op == "c" else None,
                       "source": {"schema": "public", "table": "reactions", "lsn": lsn, "txId": 9,
                                  "connector": "postgresql"}, "ts_ms": 1}).encode()


def test_five_thousand_reactions_are_one_exact_item_under_duplicated_and_reordered_events(
    pg: PostgresSettings,
) -> None:
    """5,000 reactions to one post, their change events decoded, a fifth of them twice, in a random
    order and in batches, each batch planned as the worker does (touched -> one snapshot read) and
    applied to a store that keeps the newest version of each item: one reaction item, count 5,000,
    the latest three actors, equal to the spec."""
    rng = random.Random(5000)
    author, post = str(uuid.uuid4()), str(uuid.uuid4())
    fans = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(5_000)]
    t0 = datetime.now(UTC) - timedelta(hours=2)
    at = {fan: t0 + timedelta(seconds=i) for i, fan in enumerate(fans)}
    with psycopg.connect(pg.conninfo()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (id, handle) VALUES (%s, 'author')", (author,))
        cur.execute("INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'b')", (post, author))
        with cur.copy("COPY users (id, handle) FROM STDIN") as copy:
            for i, fan in enumerate(fans):
                copy.write_row((fan, f"fan{i}"))
        with cur.copy("COPY reactions (post_id, user_id, kind, created_at) FROM STDIN") as copy:
            for fan in fans:
                copy.write_row((post, fan, "like", at[fan]))
    events = [
        decode("social.public.reactions", 0, i, None, reaction_envelope(post, fan, at[fan], 1_000 + i))
        for i, fan in enumerate(fans)
    ]
    delivered = events + rng.sample(events, 1_000)
    rng.shuffle(delivered)
    projection = NotificationsProjection()
    held: dict[ItemKey, tuple[int, Document | None]] = {}
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        source = PostgresSource(conn)
        for start in range(0, len(delivered), 500):
            touches = {t for e in delivered[start:start + 500] if e is not None for t in projection.touched(e)}
            for op in projection.plan(touches, source, None):  # type: ignore[arg-type]
                if op.key not in held or held[op.key][0] < op.version:
                    held[op.key] = (op.version, op.doc if isinstance(op, Put) else None)
    live = {key: doc for key, (_, doc) in held.items() if doc is not None}
    key = item_key(author, "reactions", post)
    assert set(live) == {key, unread_key(author)}, sorted(live)
    assert live[key]["count"] == 5_000 and live[key]["actorIds"] == fans[::-1][:3], live[key]
    assert live == spec_all(pg)
