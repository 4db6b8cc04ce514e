"""The ``redis`` projection: profiles, leaderboards and trending topics, as Redis structures.

Items (collection, id -> Redis structure, ``stores/redis_store.py`` lays them out):

- ``profile``, ``<userId>`` -> the hash ``<P>profile:<userId>``: handle, displayName, bio, followers,
  following, posts (public posts);
- ``authorLikes``, ``<day>:<userId>`` -> a member of ``<P>lb:authors:<day>``: likes received on the
  author's posts during that UTC day (``day`` ``all``: every like they hold);
- ``hotPosts``, ``<day>:<postId>`` -> a member of ``<P>lb:posts:<day>``: a public post created that
  UTC day, scored by its reactions + replies;
- ``topics``, ``<day>:<topic>`` -> a member of ``<P>lb:topics:<day>``: public posts created that day
  with the topic;
- ``feedPage``, ``<userId>`` -> the string ``<P>feed:<userId>``: the first ``feed_page_size`` + 1
  items of the user's feed, the same items in the same order as ``ReadClient.feed_page`` (the
  feed's visibility rule), held only for users who read their feed (a cache the projection keeps
  exact: ``Projection.cached``). A reader that misses asks for it; the worker writes it, and
  refreshes it on every change of the feed (a post of someone they follow or their own, a follow,
  mute or block of theirs) while it is held; it expires ``feed_page_ttl_s`` after its last read.

A member exists only with a positive score. Every score is counted in PostgreSQL when a change names
the item, and SET (never incremented), so duplicates and replays change nothing. Day sets are kept for
``PROJECTORS_REDIS_RETENTION_DAYS`` after their day ends, then expire in Redis; the spec holds the same
window, and verify does not judge an item within ``MARGIN`` of its expiry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field

from projectors.events.models import (
    BlockRow,
    ChangeEvent,
    FollowRow,
    MuteRow,
    PostRow,
    ReactionRow,
    ReplyRow,
    UserRow,
)
from projectors.model import CachedItems, Document, HeldItems, ItemKey
from projectors.projections.base import Projection, Touch, is_uuid
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import Doc, FeedItem
from projectors.projections.feed import POST_COLUMNS, item_of, post_fields, visible_to
from projectors.source import PostgresSource
from projectors.stores.redis_store import ALL_TIME, FEED_PAGE, PROFILE, day_expiry

AUTHORS, POSTS, TOPICS = "authorLikes", "hotPosts", "topics"
MARGIN = timedelta(minutes=10)
DAY_SQL = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


class RedisProfile(Doc):
    """The hash ``<prefix>:profile:<userId>`` (Redis keeps every value as a string; counts are decimal)."""

    handle: str
    displayName: str
    bio: str
    followers: int = Field(ge=0, description="users following them")
    following: int = Field(ge=0, description="users they follow")
    posts: int = Field(ge=0, description="their public posts")


class LeaderboardEntry(Doc):
    """One member of a leaderboard sorted set ``<prefix>:lb:<board>:<day>`` with its score."""

    day: str = Field(pattern=r"^(all|\d{4}-\d{2}-\d{2})$", description="UTC day of the window, or all")
    member: str = Field(description="user id (authors), post id (posts) or topic (topics)")
    score: int = Field(gt=0)


class RedisFeedPage(Doc):
    """The string ``<prefix>:feed:<userId>`` (after ``<version>|``): the first items of the user's feed,
    newest first, as ``ReadClient.feed_page`` returns them (one more than a page: whether more follow)."""

    items: list[FeedItem]


def day_of(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()


def parsed_day(text: str | None) -> str | None:
    """The UTC day of a Debezium timestamp (ISO-8601), or None when it cannot say."""
    if not text:
        return None
    try:
        return day_of(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def likes_move(event: ChangeEvent) -> bool:
    """Whether a post's change can move its likes between authors' boards: its delete (its reactions
    go with it, and their deletes cannot name the author any more), a change of its author, a
    snapshot; a new post has no likes, an edit keeps them where they are."""
    if event.op == "c":
        return False
    before, after = event.before, event.after
    if event.op == "u" and isinstance(before, PostRow) and isinstance(after, PostRow):
        return before.author_id != after.author_id
    return True


def window(now: datetime, retention_days: int) -> list[str]:
    """The UTC days whose sets have not expired at ``now``, oldest first."""
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=n) for n in range(retention_days, -1, -1)]
    return [d.isoformat() for d in days if day_expiry(d.isoformat(), retention_days) > now.timestamp()]


def _pairs(keys: Sequence[ItemKey]) -> tuple[list[str], list[str]]:
    days, ids = [], []
    for key in keys:
        day, _, member = key.id.partition(":")
        days.append(day)
        ids.append(member)
    return days, ids


def _entries(collection: str, rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[ItemKey, Document]]:
    for day, member, score in rows:
        if int(score) > 0:
            yield ItemKey(collection, f"{day}:{member}"), {"day": day, "member": str(member), "score": int(score)}


PROFILE_SQL = (
    "SELECT u.id::text, u.handle::text, u.display_name, u.bio, "
    "(SELECT count(*) FROM follows f WHERE f.followee_id = u.id), "
    "(SELECT count(*) FROM follows f WHERE f.follower_id = u.id), "
    "(SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.visibility = 'public') FROM users u WHERE {}"
)
# each named author's likes per UTC day of the like and in all: one pass over their
# posts' likes (a (day, author) pair each would count a popular author's likes once per day asked)
AUTHORS_SQL = (
    f"SELECT CASE WHEN GROUPING({DAY_SQL.format('r.created_at')}) = 1 THEN 'all' "
    f"ELSE {DAY_SQL.format('r.created_at')} END, p.author_id::text, count(*) FROM posts p "
    "JOIN reactions r ON r.post_id = p.id AND r.kind = 'like' WHERE p.author_id = ANY(%s::uuid[]) "
    f"GROUP BY GROUPING SETS ((p.author_id, {DAY_SQL.format('r.created_at')}), (p.author_id))"
)
AUTHORS_ALL_SQL = (
    "SELECT 'all', p.author_id::text, count(*) FROM reactions r JOIN posts p ON p.id = r.post_id "
    "WHERE r.kind = 'like' GROUP BY 2 UNION ALL "
    f"SELECT {DAY_SQL.format('r.created_at')}, p.author_id::text, count(*) FROM reactions r "
    "JOIN posts p ON p.id = r.post_id WHERE r.kind = 'like' AND r.created_at >= %s GROUP BY 1, 2"
)
HOT_SCORE = (
    "(SELECT count(*) FROM reactions r WHERE r.post_id = p.id) "
    "+ (SELECT count(*) FROM replies y WHERE y.post_id = p.id)"
)
POSTS_SQL = (
    f"SELECT k.day, p.id::text, {HOT_SCORE} FROM unnest(%s::text[], %s::uuid[]) AS k(day, id) "
    f"JOIN posts p ON p.id = k.id AND p.visibility = 'public' AND {DAY_SQL.format('p.created_at')} = k.day"
)
POSTS_ALL_SQL = (
    f"SELECT {DAY_SQL.format('p.created_at')}, p.id::text, {HOT_SCORE} FROM posts p "
    "WHERE p.visibility = 'public' AND p.created_at >= %s"
)
TOPICS_SQL = (
    "SELECT k.day, k.topic, count(p.id) FROM unnest(%s::text[], %s::text[]) AS k(day, topic) "
    "JOIN posts p ON k.topic = ANY(p.topics) AND p.visibility = 'public' "
    "AND p.created_at >= (k.day::date)::timestamp AT TIME ZONE 'UTC' "
    "AND p.created_at < (k.day::date + 1)::timestamp AT TIME ZONE 'UTC' GROUP BY 1, 2"
)
# the first items of each user's feed (the feed's rule, as read/fallback.py's FEED_PAGE); a user that
# does not exist has no page, one with an empty feed an empty page
FEED_PAGES_SQL = (
    f"SELECT r.u::text, x.* FROM unnest(%s::uuid[]) AS r(u) JOIN users us ON us.id = r.u "
    f"LEFT JOIN LATERAL (SELECT {POST_COLUMNS} FROM posts po WHERE (po.author_id = r.u OR po.author_id IN "
    f"(SELECT followee_id FROM follows WHERE follower_id = r.u)) AND {visible_to('r.u')} "
    "ORDER BY po.created_at DESC, po.id DESC LIMIT %s) AS x ON TRUE ORDER BY 1, x.created_at DESC, x.id DESC"
)
FOLLOWERS_SQL = "SELECT DISTINCT follower_id::text FROM follows WHERE followee_id = ANY(%s::uuid[])"
TOPICS_ALL_SQL = (
    f"SELECT {DAY_SQL.format('p.created_at')}, t.topic, count(*) FROM posts p, unnest(p.topics) AS t(topic) "
    "WHERE p.visibility = 'public' AND p.created_at >= %s GROUP BY 1, 2"
)


class RedisProjection(Projection):
    name = "redis"
    tables = ("users", "follows", "posts", "replies", "reactions", "blocks", "mutes")
    collections = (PROFILE, AUTHORS, POSTS, TOPICS, FEED_PAGE)
    cached = (FEED_PAGE,)

    def __init__(self, retention_days: int = 7, feed_page_size: int = 50) -> None:
        self.retention_days = retention_days
        self.feed_page_size = feed_page_size

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, UserRow):
                out += [ItemKey(PROFILE, row.id), *([("feed", row.id)] if event.op == "d" else [])]
            elif isinstance(row, FollowRow):
                out += [ItemKey(PROFILE, row.follower_id), ItemKey(PROFILE, row.followee_id), ("feed", row.follower_id)]
            elif isinstance(row, PostRow):  # REPLICA IDENTITY FULL: a delete names author, day, topics
                day = parsed_day(row.created_at)
                out += [ItemKey(PROFILE, row.author_id), ("post", row.id, day)]
                if likes_move(event):
                    out.append(("author", row.author_id))
                out += [("topic", t, day) for t in row.topics]
                out += [("feed", row.author_id), ("followers", row.author_id)]
            elif isinstance(row, (ReactionRow, ReplyRow)):  # a reaction's delete holds only its key
                out.append(("post", row.post_id, None))
            elif isinstance(row, MuteRow):
                out.append(("feed", row.muter_id))
            elif isinstance(row, BlockRow):
                out += [("feed", row.blocker_id), ("feed", row.blocked_id)]
        return out

    def held_pages(self, touches: Collection[Touch], source: PostgresSource, held: HeldItems) -> set[ItemKey]:
        """The feed pages the store holds among those ``touches`` change: the named users' and
        those of the followers of the named authors (one query for all of them)."""
        users = {t[1] for t in touches if isinstance(t, tuple) and t[0] == "feed"}
        authors = sorted({t[1] for t in touches if isinstance(t, tuple) and t[0] == "followers"})
        if authors:
            users.update(str(row[0]) for row in source.rows(FOLLOWERS_SQL, [authors]))
        if not users or not self.feed_page_size or not isinstance(held, CachedItems):
            return set()
        return held.held_keys([ItemKey(FEED_PAGE, u) for u in sorted(users) if is_uuid(u)])

    def days(self) -> list[str]:
        return window(datetime.now(UTC), self.retention_days)

    def expand(self, touches: Collection[Touch], source: PostgresSource, held: HeldItems) -> set[ItemKey]:
        days = self.days()
        live = set(days)
        keys: set[ItemKey] = set()
        authors: set[str] = set()
        lookup: set[str] = set()
        for t in touches:
            if isinstance(t, ItemKey):
                keys.add(t)
            elif isinstance(t, tuple) and t[0] == "author":
                authors.add(t[1])
            elif isinstance(t, tuple) and t[0] == "post":
                if t[2] is None:
                    lookup.add(t[1])
                elif t[2] in live:
                    keys.add(ItemKey(POSTS, f"{t[2]}:{t[1]}"))
            elif isinstance(t, tuple) and t[0] == "topic":
                keys.update(ItemKey(TOPICS, f"{d}:{t[1]}") for d in ([t[2]] if t[2] else days) if d in live)
        if lookup:
            found = source.rows(
                f"SELECT id::text, author_id::text, {DAY_SQL.format('created_at')} FROM posts "
                "WHERE id = ANY(%s::uuid[])", [sorted(lookup)],
            )
            for post_id, author_id, day in found:
                authors.add(author_id)
                if day in live:
                    keys.add(ItemKey(POSTS, f"{day}:{post_id}"))
        for author in authors:
            keys.update(ItemKey(AUTHORS, f"{d}:{author}") for d in (ALL_TIME, *days))
        return keys | self.held_pages(touches, source, held)

    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        live = {ALL_TIME, *self.days()}
        by: dict[str, list[ItemKey]] = defaultdict(list)
        for key in keys:
            day, sep, member = key.id.partition(":")
            if key.collection in (PROFILE, FEED_PAGE) and is_uuid(key.id):
                by[key.collection].append(key)
            elif not sep or day not in live or (day == ALL_TIME and key.collection != AUTHORS):
                continue
            elif key.collection == TOPICS or (key.collection in (AUTHORS, POSTS) and is_uuid(member)):
                by[key.collection].append(key)
        out: dict[ItemKey, Document] = {}
        if by[PROFILE]:
            rows = source.rows(PROFILE_SQL.format("u.id = ANY(%s::uuid[])"), [[k.id for k in by[PROFILE]]])
            out.update(self._profiles(rows))
        if by[FEED_PAGE] and self.feed_page_size:
            out.update(self.feed_pages([k.id for k in by[FEED_PAGE]], source))
        if by[AUTHORS]:
            authors = sorted(set(_pairs(by[AUTHORS])[1]))
            out.update(_entries(AUTHORS, source.rows(AUTHORS_SQL, [authors])))
        for collection, sql in ((POSTS, POSTS_SQL), (TOPICS, TOPICS_SQL)):
            if by[collection]:
                days, ids = _pairs(by[collection])
                out.update(_entries(collection, source.rows(sql, [days, ids])))
        wanted = set(keys)
        return {k: v for k, v in out.items() if k in wanted}

    def feed_pages(self, users: Sequence[str], source: PostgresSource) -> dict[ItemKey, Document]:
        pages: dict[ItemKey, Document] = {}
        for user, *post in source.rows(FEED_PAGES_SQL, [list(users), self.feed_page_size + 1]):
            items = pages.setdefault(ItemKey(FEED_PAGE, str(user)), {"items": []})["items"]
            if post[0] is not None:
                items.append(dict(item_of(str(user), post_fields(*post))[1]))
        return pages

    @staticmethod
    def _profiles(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[ItemKey, Document]]:
        for user_id, handle, display_name, bio, followers, following, posts in rows:
            yield ItemKey(PROFILE, str(user_id)), {
                "handle": str(handle), "displayName": display_name, "bio": bio,
                "followers": int(followers), "following": int(following), "posts": int(posts),
            }

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        yield from self._profiles(list(source.stream(PROFILE_SQL.format("TRUE"))))
        first = self.days()[0]
        since = datetime.combine(date.fromisoformat(first), datetime.min.time(), UTC)
        for collection, sql in ((AUTHORS, AUTHORS_ALL_SQL), (POSTS, POSTS_ALL_SQL), (TOPICS, TOPICS_ALL_SQL)):
            yield from _entries(collection, list(source.stream(sql, [since])))

    def judged(self, doc: Document, at: datetime) -> Document | None:
        """A day's entry within ``MARGIN`` of its set's expiry (or past it) is not judged."""
        day = doc.get("day")
        if not isinstance(day, str) or day == ALL_TIME:
            return doc
        return doc if day_expiry(day, self.retention_days) > (at + MARGIN).timestamp() else None


def configured(settings: Any) -> RedisProjection:
    return RedisProjection(settings.redis.retention_days, settings.redis.feed_page_size)


DESCRIPTOR = Descriptor(
    "redis",
    RedisProjection(),
    "redis",
    configured=configured,
    documents={
        PROFILE: RedisProfile, AUTHORS: LeaderboardEntry, POSTS: LeaderboardEntry, TOPICS: LeaderboardEntry,
        FEED_PAGE: RedisFeedPage,
    },
    stored={
        PROFILE: RedisProfile, AUTHORS: LeaderboardEntry, POSTS: LeaderboardEntry, TOPICS: LeaderboardEntry,
        FEED_PAGE: RedisFeedPage,
    },
)

