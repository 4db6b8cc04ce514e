"""The spec SQL of every projection, on a real PostgreSQL: each rule on a hand-made scene, and the
key-restricted reads (what the projector uses) against the full spec (what ``verify`` uses) and an
independent Python reference, over random social activity."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from projectors.db.migrate import migrate
from projectors.model import ItemKey
from projectors.projections import PROJECTIONS, Projection, capture_tables
from projectors.projections.feed import FeedProjection
from projectors.settings import PostgresSettings
from projectors.source import PostgresSource
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle


@pytest.fixture()
def pg(stack: StackHandle) -> Iterator[PostgresSettings]:
    """A fresh, migrated database of its own on the PostgreSQL server shared by this test file's tests."""
    settings = stack.settings.pg.model_copy(update={"database": f"spec_{uuid.uuid4().hex[:10]}"})
    migrate(settings, "spec_pub", capture_tables(stack.settings.capture))
    yield settings


# the feed with a low celebrity threshold: a workload of 25-30 users has celebrities then
HYBRID = FeedProjection(celebrity_followers=6)
VARIANTS: dict[str, Projection] = {**PROJECTIONS, "feed-hybrid": HYBRID}


def spec_all(pg: PostgresSettings, name: str) -> dict[ItemKey, Any]:
    with psycopg.connect(pg.conninfo()) as conn:
        return dict(VARIANTS[name].spec_all(PostgresSource(conn)))


def spec_for(pg: PostgresSettings, name: str, keys: set[ItemKey]) -> dict[ItemKey, Any]:
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        return dict(VARIANTS[name].spec_for(keys, PostgresSource(conn)))


class Scene:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.ids: dict[str, str] = {}

    def user(self, name: str) -> str:
        self.ids[name] = str(uuid.uuid4())
        self.conn.execute("INSERT INTO users (id, handle, bio) VALUES (%s, %s, 'bio')", (self.ids[name], name))
        return self.ids[name]

    def post(self, name: str, author: str, visibility: str = "public", topics: tuple[str, ...] = ("t",)) -> str:
        self.ids[name] = str(uuid.uuid4())
        self.conn.execute(
            "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, %s)",
            (self.ids[name], self.ids[author], "x" * 200, list(topics), visibility),
        )
        return self.ids[name]

    def rel(self, table: str, a: str, b: str) -> None:
        self.conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (self.ids[a], self.ids[b]))


def test_feed_rules(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        for name in ("author", "fan", "muter", "blocker", "blocked", "stranger"):
            s.user(name)
        for follower in ("fan", "muter", "blocker", "blocked"):
            s.rel("follows (follower_id, followee_id)", follower, "author")
        s.rel("mutes (muter_id, muted_id)", "muter", "author")
        s.rel("blocks (blocker_id, blocked_id)", "blocker", "author")
        s.rel("blocks (blocker_id, blocked_id)", "author", "blocked")
        s.post("public", "author")
        s.post("private", "author", visibility="private")
        conn.commit()
        ids = s.ids
    spec = spec_all(pg, "feed")
    pairs = {(k.partition, v["postId"]) for k, v in spec.items()}
    assert pairs == {
        (ids["author"], ids["public"]),  # the author always sees their posts
        (ids["author"], ids["private"]),  # ... private ones too
        (ids["fan"], ids["public"]),  # a follower sees public posts; muted, blocked either way: not
    }
    item = spec[ItemKey("userFeed", f"{ids['fan']}:{ids['public']}", ids["fan"])]
    assert item["bodyPreview"] == "x" * 140 and item["authorId"] == ids["author"] and item["topics"] == ["t"]
    assert item["createdAt"].endswith("Z")
    # the key-restricted read agrees, including keys that must not exist
    every = {ItemKey("userFeed", f"{ids[r]}:{ids[p]}", ids[r]) for r in ids if r not in ("public", "private")
             for p in ("public", "private")}
    assert spec_for(pg, "feed", every) == spec
    # a feed item's id in another partition is not an item (a store may hold anything): absent
    odd = ItemKey("userFeed", f"{ids['fan']}:{ids['public']}", ids["author"])
    assert spec_for(pg, "feed", every | {odd}) == spec


def test_counter_rules(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        for name in ("a", "b", "c"):
            s.user(name)
        s.post("p", "a")
        s.rel("follows (follower_id, followee_id)", "b", "a")
        s.rel("follows (follower_id, followee_id)", "c", "a")
        for who, kind in (("b", "like"), ("c", "like"), ("c", "love")):
            conn.execute("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, %s)",
                         (s.ids["p"], s.ids[who], kind))
        conn.execute("INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, 'r')",
                     (str(uuid.uuid4()), s.ids["p"], s.ids["b"]))
        conn.commit()
        ids = s.ids
    counts = {k.id: v["count"] for k, v in spec_all(pg, "counters").items()}
    p, a, b = ids["p"], ids["a"], ids["b"]
    assert counts[f"{p}:likes"] == 2  # a love is not a like
    assert counts[f"{p}:replies"] == 1
    assert counts[f"{a}:followers"] == 2 and counts[f"{a}:following"] == 0 and counts[f"{a}:posts"] == 1
    assert counts[f"{b}:following"] == 1 and counts[f"{b}:posts"] == 0  # zero counts exist
    assert len(counts) == 2 + 3 * 3


def test_graph_and_search_rules(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        s.user("a")
        s.user("b")
        s.post("pub", "a", topics=("x", "y", "x"))
        s.post("priv", "a", visibility="private", topics=("y",))
        s.rel("follows (follower_id, followee_id)", "b", "a")
        s.rel("blocks (blocker_id, blocked_id)", "a", "b")
        conn.commit()
        ids = s.ids
    graph = spec_all(pg, "graph")
    by = Counter(k.collection for k in graph)
    assert by == {"User": 2, "Post": 2, "Topic": 2, "AUTHORED": 2, "TAGGED": 3, "FOLLOWS": 1, "BLOCKS": 1}
    follows = graph[ItemKey("FOLLOWS", f"{ids['b']}:{ids['a']}")]
    assert follows == {"id": f"{ids['b']}:{ids['a']}", "from": ids["b"], "to": ids["a"]}
    assert graph[ItemKey("Topic", "x")] == {"id": "x", "name": "x"}
    search = spec_all(pg, "search")
    assert {k for k in search if k.collection == "posts"} == {ItemKey("posts", ids["pub"])}  # public only
    assert search[ItemKey("users", ids["a"])] == {"id": ids["a"], "handle": "a", "displayName": "", "bio": "bio"}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_key_reads_match_the_full_spec_over_random_activity(pg: PostgresSettings, name: str) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        load = SocialWorkload(conn, rng=random.Random(11))
        load.seed(users=25, posts=40, follows=120)
        load.run(600)
    full = spec_all(pg, name)
    assert full
    rng = random.Random(3)
    absent = set()
    for k in rng.sample(list(full), 20):  # the same keys with their first id replaced: must not exist
        first, fresh = k.id.split(":")[0], str(uuid.uuid4())
        absent.add(ItemKey(k.collection, k.id.replace(first, fresh), k.partition.replace(first, fresh)))
    sample = set(rng.sample(list(full), min(300, len(full))))
    assert spec_for(pg, name, sample | absent) == {k: full[k] for k in sample}


def test_feed_spec_matches_an_independent_reference(pg: PostgresSettings) -> None:
    with psycopg.connect(pg.conninfo()) as conn:
        load = SocialWorkload(conn, rng=random.Random(12))
        load.seed(users=30, posts=50, follows=200)
        load.run(800)
        q = conn.execute
        posts = {str(r[0]): (str(r[1]), r[2]) for r in q("SELECT id, author_id, visibility FROM posts")}
        follows = {(str(a), str(b)) for a, b in q("SELECT follower_id, followee_id FROM follows")}
        blocks = {(str(a), str(b)) for a, b in q("SELECT blocker_id, blocked_id FROM blocks")}
        mutes = {(str(a), str(b)) for a, b in q("SELECT muter_id, muted_id FROM mutes")}
    expected = set()
    for post, (author, visibility) in posts.items():
        expected.add((author, post))
        for follower, followee in follows:
            if followee == author and visibility == "public" and (follower, author) not in blocks \
                    and (follower, author) not in mutes and (author, follower) not in blocks:
                expected.add((follower, post))
    got = {(k.partition, v["postId"]) for k, v in spec_all(pg, "feed").items()}
    assert got == expected
    assert len(expected) > len(posts)
    # the hybrid: fanned-out items plus, merged on read, the stored posts of followed celebrities
    hybrid = spec_all(pg, "feed-hybrid")
    kinds = Counter(k.collection for k in hybrid)
    assert kinds["feedAuthors"] and kinds["feedPosts"] and kinds["feedFollows"], kinds
    posts_of: dict[str, set[str]] = {}
    for k, v in hybrid.items():
        if k.collection == "feedPosts":
            posts_of.setdefault(v["authorId"], set()).add(v["postId"])
    merged = {(k.partition, v["postId"]) for k, v in hybrid.items() if k.collection == "userFeed"}
    fanned = len(merged)
    for k, v in hybrid.items():
        if k.collection == "feedFollows":
            merged |= {(v["recipientId"], p) for p in posts_of.get(v["authorId"], ())}
    assert merged == expected
    assert fanned < len(expected)  # some of it is merged on read
    celebrities = {k.partition for k in hybrid if k.collection == "feedAuthors"}
    followers = Counter(b for _, b in follows)
    assert celebrities == {a for a, n in followers.items() if n >= HYBRID.celebrity_followers}


def test_string_lists_reach_postgresql_intact(pg: PostgresSettings) -> None:
    awkward = ["plain", "with,comma", 'quote"d', "back\\slash", "{brace}", " spaced ", "NULL", "", "ünï", "a\nb"]
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        source = PostgresSource(conn)
        assert source.rows("SELECT %s::text[], %s::uuid[], %s::int", [awkward, ids, 7]) == [
            (awkward, [uuid.UUID(i) for i in ids], 7)
        ]
        assert source.rows("SELECT %s::text[]", [[]]) == [([],)]
        # nothing to escape (the one-join path), yet separators, braces and NULL stay text
        plain = ["with,comma", "{brace}", "NULL", "", " spaced ", "a\nb"]
        assert source.rows("SELECT %s::text[]", [plain]) == [(plain,)]


def test_blank_topics_are_not_topics(pg: PostgresSettings) -> None:
    """A topic that is empty or only spaces makes no Topic node and no TAGGED edge (it made a
    duplicate node on every write), and no touch names it."""
    with psycopg.connect(pg.conninfo()) as conn:
        s = Scene(conn)
        s.user("a")
        s.post("p", "a", topics=("", " ", "real"))
        conn.commit()
        ids = s.ids
    graph = spec_all(pg, "graph")
    assert {k.id for k in graph if k.collection == "Topic"} == {"real"}
    assert {k.id for k in graph if k.collection == "TAGGED"} == {f"{ids['p']}:real"}
    asked = {ItemKey("Topic", t) for t in ("", " ", "real")} | {ItemKey("TAGGED", f"{ids['p']}:{t}")
                                                               for t in ("", " ", "real")}
    assert set(spec_for(pg, "graph", asked)) == {ItemKey("Topic", "real"), ItemKey("TAGGED", f"{ids['p']}:real")}
