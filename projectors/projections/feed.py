"""The feed: who sees which post, fanned out on write for most authors and on read for celebrities.

Containers (Cosmos):

- ``userFeed`` (partition key ``/recipientId``): item ``<recipientId>:<postId>`` exists when the
  recipient is the post's author, or the post is public, the recipient follows the author, has not
  blocked or muted them, is not blocked by them (:func:`pair_visible`), and the author is not a
  celebrity;
- ``feedPosts`` (``/authorId``): item ``<postId>`` for each public post of a celebrity, stored once;
- ``feedFollows`` (``/recipientId``): item ``<recipientId>:<authorId>`` when the recipient follows a
  celebrity under the same rule (:func:`pair_visible`);
- ``feedAuthors`` (``/authorId``): item ``<authorId>`` for each celebrity.

A celebrity is an author with at least ``celebrity_followers`` followers (``PROJECTORS_FEED_CELEBRITY_FOLLOWERS``).
A feed page (``ReadClient.feed_page``) is the recipient's ``userFeed`` partition merged with the
newest ``feedPosts`` of the celebrities in its ``feedFollows`` partition: the same items a fan-out of
every post would give (tested).

The worker never queries a container for a post or a follow: the recipients of a post are its
author's followers in PostgreSQL, and every item is written by a point operation. Only an unfollow,
block or mute reads the recipient's own partition (one partition query), for the items of posts
deleted since they were written, which PostgreSQL no longer lists. The celebrity markers
(``feedAuthors``) are point-read: an author whose marker disagrees with their follower count crossed
the threshold, and every item of theirs is rewritten in the other form (becoming a celebrity, each
follower's partition is read once for the items of posts deleted meanwhile).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from projectors.events.models import BlockRow, ChangeEvent, FollowRow, MuteRow, PostRow
from projectors.model import Document, HeldItems, ItemKey
from projectors.projections.base import Projection, Touch, is_uuid, iso
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import DOCUMENTS, STORED
from projectors.source import PostgresSource

COLLECTION = "userFeed"
POSTS_COLLECTION = "feedPosts"
FOLLOWS_COLLECTION = "feedFollows"
AUTHORS_COLLECTION = "feedAuthors"
CONTAINERS = {
    COLLECTION: "/recipientId",
    POSTS_COLLECTION: "/authorId",
    FOLLOWS_COLLECTION: "/recipientId",
    AUTHORS_COLLECTION: "/authorId",
}
PREVIEW_CHARS = 140
DEFAULT_CELEBRITY_FOLLOWERS = 1_000


def pair_unhidden(recipient: str, author: str) -> str:
    """No block either way and no mute by the recipient, in SQL (the notifications use it too)."""
    return f"""(NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = {recipient} AND b.blocked_id = {author})
        AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = {author} AND b.blocked_id = {recipient})
        AND NOT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = {recipient} AND m.muted_id = {author}))"""


def pair_visible(recipient: str, author: str) -> str:
    """The rule between a recipient and an author, in SQL: follows, no block either way, no mute.
    Written once: the projector, ``verify`` and the celebrity subscriptions all use it."""
    return f"""(EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = {recipient} AND f.followee_id = {author})
        AND {pair_unhidden(recipient, author)})"""


def visible_to(recipient: str) -> str:
    """Whether post ``po`` reaches ``recipient`` at all (fanned out or merged on read)."""
    return f"({recipient} = po.author_id OR (po.visibility = 'public' AND {pair_visible(recipient, 'po.author_id')}))"


POST_COLUMNS = "po.id::text, po.author_id::text, po.created_at, po.body, po.topics"
# A post reaches thousands of feeds: each post's columns are one query (read and converted once per
# post, not once per recipient), and the (recipient, post) pairs of existing posts that the rule
# hides another. Hidden pairs are few (blocks, mutes, unfollows, private posts) where visible ones
# are most: reading them back cost more than the rest of a batch (rows parsed, keys rebuilt).
HIDDEN_PAIRS = (
    "SELECT k.r::text, k.p::text FROM unnest(%s::uuid[], %s::uuid[]) AS k(r, p) "
    f"JOIN posts po ON po.id = k.p WHERE NOT {visible_to('k.r')}"
)
POSTS = f"SELECT {POST_COLUMNS}, po.visibility FROM posts po WHERE po.id = ANY(%s::uuid[])"
VISIBLE_FOLLOWS = (
    "SELECT k.r::text, k.a::text FROM unnest(%s::uuid[], %s::uuid[]) AS k(r, a) "
    f"WHERE {pair_visible('k.r', 'k.a')}"
)
FOLLOWER_COUNTS = (
    "SELECT followee_id::text, count(*) FROM follows WHERE followee_id = ANY(%s::uuid[]) GROUP BY followee_id"
)
FOLLOWERS = "SELECT followee_id::text, follower_id::text FROM follows WHERE followee_id = ANY(%s::uuid[])"
# the posts that can reach a follower: public ones (a private post reaches its author alone, whose
# own items no follow, mute, block or crossing changes)
POSTS_OF = "SELECT author_id::text, id::text FROM posts WHERE author_id = ANY(%s::uuid[]) AND visibility = 'public'"
POST_IDS = "SELECT id::text FROM posts WHERE id = ANY(%s::uuid[])"
CELEBRITIES = "SELECT followee_id FROM follows GROUP BY followee_id HAVING count(*) >= %(threshold)s"


def feed_key(recipient_id: str, post_id: str) -> ItemKey:
    return ItemKey(COLLECTION, f"{recipient_id}:{post_id}", recipient_id)


def post_key(author_id: str, post_id: str) -> ItemKey:
    return ItemKey(POSTS_COLLECTION, post_id, author_id)


def follow_key(recipient_id: str, author_id: str) -> ItemKey:
    return ItemKey(FOLLOWS_COLLECTION, f"{recipient_id}:{author_id}", recipient_id)


def author_key(author_id: str) -> ItemKey:
    return ItemKey(AUTHORS_COLLECTION, author_id, author_id)


def post_fields(post: str, author: str, created_at: Any, body: str, topics: list[str]) -> dict[str, Any]:
    """What every feed item of a post shares."""
    return {
        "postId": post,
        "authorId": author,
        "createdAt": iso(created_at),
        "bodyPreview": body[:PREVIEW_CHARS],
        "topics": topics,
    }


def feed_doc(item_id: str, recipient: str, fields: dict[str, Any]) -> Document:
    return {"id": item_id, "recipientId": recipient, **fields, "topics": list(fields["topics"])}


def post_doc(fields: dict[str, Any]) -> Document:
    return {"id": fields["postId"], **fields, "topics": list(fields["topics"])}


def follow_doc(recipient: str, author: str) -> Document:
    return {"id": f"{recipient}:{author}", "recipientId": recipient, "authorId": author}


def author_doc(author: str) -> Document:
    return {"id": author, "authorId": author}


def item_of(recipient: str, fields: dict[str, Any]) -> tuple[ItemKey, Document]:
    key = feed_key(recipient, fields["postId"])
    return key, feed_doc(key.id, recipient, fields)


@dataclass(frozen=True, slots=True)
class PostTouch:
    """Every feed item of a post: its author's, its author's followers' (or its one stored copy).
    ``created``: a new post, whose one stored copy cannot exist unless its author is a celebrity.
    ``public``: the post was public before or after the change (a change of a post that stays
    private cannot give or take a follower's item: its visibility changes have events of their own,
    which come in order, the post's events sharing one partition)."""

    post_id: str
    author_id: str
    created: bool = False
    public: bool = True


@dataclass(frozen=True, slots=True)
class PairTouch:
    """Every feed item of ``recipient`` for a post of ``author``, and the subscription between them.
    ``lookup``: the change can take posts away, so the recipient's partition is read for items of
    posts that PostgreSQL no longer has."""

    recipient_id: str
    author_id: str
    lookup: bool


@dataclass(frozen=True, slots=True)
class AuthorTouch:
    """The author's follower count changed: they may have crossed the celebrity threshold."""

    author_id: str


@runtime_checkable
class PointReads(Protocol):
    def read_items(self, keys: list[ItemKey]) -> dict[ItemKey, Document]: ...


class FeedProjection(Projection):
    name = "feed"
    tables = ("posts", "follows", "blocks", "mutes")
    collections = tuple(CONTAINERS)

    def __init__(self, celebrity_followers: int = DEFAULT_CELEBRITY_FOLLOWERS) -> None:
        if celebrity_followers < 1:
            raise ValueError("celebrity_followers must be at least 1")
        self.celebrity_followers = celebrity_followers

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        removing = event.op == "d"
        for row in event.rows():
            if isinstance(row, PostRow):
                # without the before row of a change (no REPLICA IDENTITY FULL), assume it was public
                public = (event.op != "c" and event.before is None) or any(
                    isinstance(r, PostRow) and r.visibility != "private" for r in (event.before, event.after)
                )
                out.append(PostTouch(row.id, row.author_id, created=event.op == "c", public=public))
            elif isinstance(row, FollowRow):
                out += [PairTouch(row.follower_id, row.followee_id, lookup=removing), AuthorTouch(row.followee_id)]
            elif isinstance(row, MuteRow):
                out.append(PairTouch(row.muter_id, row.muted_id, lookup=not removing))
            elif isinstance(row, BlockRow):
                out += [
                    PairTouch(row.blocker_id, row.blocked_id, lookup=not removing),
                    PairTouch(row.blocked_id, row.blocker_id, lookup=not removing),
                ]
        return out

    # -- who is a celebrity -------------------------------------------------------------------------
    def celebrities(self, authors: Iterable[str], source: PostgresSource) -> set[str]:
        """The celebrities among ``authors``, from their follower counts now."""
        wanted = sorted(set(authors))
        if not wanted:
            return set()
        return {a for a, n in source.rows(FOLLOWER_COUNTS, [wanted]) if n >= self.celebrity_followers}

    def expand(self, touches: Collection[Touch], source: PostgresSource, held: HeldItems) -> set[ItemKey]:
        return self.targets(touches, source, held)[0]

    def targets(
        self, touches: Collection[Touch], source: PostgresSource, held: HeldItems
    ) -> tuple[set[ItemKey], set[ItemKey]]:
        """The keys, and those likely new: a new post's items, a follow's or unmute's items."""
        fresh: set[ItemKey] = set()
        posts = [t for t in touches if isinstance(t, PostTouch)]
        pairs = [t for t in touches if isinstance(t, PairTouch)]
        recounted = {t.author_id for t in touches if isinstance(t, AuthorTouch)}
        authors = {t.author_id for t in posts} | {t.author_id for t in pairs} | recounted
        if not authors:
            return set(), fresh
        celebrities = self.celebrities(authors, source)
        if not isinstance(held, PointReads):
            raise TypeError(f"the feed needs a store with point reads, not {type(held).__name__}")
        # markers are read where they can matter: a celebrity now (fanned out or not), an author
        # whose follower count changed (crossed?); any other author is fanned out, marker or not
        checked = sorted(celebrities | recounted)
        marked = {k.partition for k in held.read_items([author_key(a) for a in checked])} if checked else set()
        # crossed the threshold, either way: every item of theirs is rewritten in the other form
        crossed = sorted(a for a in checked if (a in celebrities) != (a in marked))
        # an author is fanned out unless they are a celebrity both now and in the store
        fanned = {a for a in authors if not (a in celebrities and a in marked)}
        keys = {author_key(a) for a in checked}

        follower_authors = sorted({t.author_id for t in posts if t.author_id in fanned} | set(crossed))
        followers: dict[str, list[str]] = defaultdict(list)
        if follower_authors:
            for followee, follower in source.rows(FOLLOWERS, [follower_authors]):
                followers[followee].append(follower)
        post_authors = sorted({t.author_id for t in pairs if not t.lookup} | set(crossed))
        posts_of: dict[str, list[str]] = defaultdict(list)
        if post_authors:
            for author, post in source.rows(POSTS_OF, [post_authors]):
                posts_of[author].append(post)

        # a new post already deleted again: nothing of it can exist (its delete event, later in the
        # same partition, cleans up after a replay)
        created = sorted({t.post_id for t in posts if t.created})
        exist = {r[0] for r in source.rows(POST_IDS, [created])} if created else set()
        for pt in posts:
            if pt.created and pt.post_id not in exist:
                continue
            mine = [feed_key(pt.author_id, pt.post_id)]
            if not pt.created or pt.author_id in celebrities or pt.author_id in marked:
                mine.append(post_key(pt.author_id, pt.post_id))
            if pt.author_id in fanned and pt.public:
                mine += [feed_key(f, pt.post_id) for f in followers[pt.author_id]]
            keys.update(mine)
            if pt.created:
                fresh.update(mine)
        for t in pairs:
            keys.add(follow_key(t.recipient_id, t.author_id))
            if t.lookup:
                # an unfollow, block or mute only takes items away: exactly the ones held (even for a
                # celebrity: items fanned out before they became one), posts deleted since included
                keys.update(held.find_keys(COLLECTION, {"authorId": t.author_id}, partition=t.recipient_id))
            else:
                fresh.add(follow_key(t.recipient_id, t.author_id))
                if t.author_id in fanned:
                    given = [feed_key(t.recipient_id, p) for p in posts_of[t.author_id]]
                    keys.update(given)
                    fresh.update(given)
        for a in crossed:
            # every item of the author's other form is new; the old form's are removed
            converted = [follow_key(f, a) for f in followers[a]]
            for p in posts_of[a]:
                converted += [post_key(a, p)] + [feed_key(f, p) for f in followers[a]]
            keys.update(converted)
            fresh.update(converted)
            if a in celebrities:
                # fanned-out items of posts deleted since they were written are not in PostgreSQL's
                # list: each follower's partition is read once (a crossing is rare, a post is not),
                # several at a time
                with ThreadPoolExecutor(max_workers=8, thread_name_prefix="feed-crossing") as pool:
                    for found in pool.map(
                        lambda f, a=a: held.find_keys(COLLECTION, {"authorId": a}, partition=f), followers[a]
                    ):
                        keys.update(found)
        return keys, fresh

    # -- the intended documents ---------------------------------------------------------------------
    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        feed: list[tuple[ItemKey, str, str]] = []
        stored: list[tuple[ItemKey, str, str]] = []
        follows: list[tuple[ItemKey, str, str]] = []
        marks: list[tuple[ItemKey, str]] = []
        for k in set(keys):
            parts = k.id.split(":")
            if not all(map(is_uuid, parts)):  # a store may hold anything: not an item, removed
                continue
            if k.collection == COLLECTION and len(parts) == 2 and k.partition == parts[0]:
                feed.append((k, parts[0], parts[1]))
            elif k.collection == POSTS_COLLECTION and len(parts) == 1:
                stored.append((k, k.partition, parts[0]))
            elif k.collection == FOLLOWS_COLLECTION and len(parts) == 2 and k.partition == parts[0]:
                follows.append((k, parts[0], parts[1]))
            elif k.collection == AUTHORS_COLLECTION and len(parts) == 1 and k.partition == parts[0]:
                marks.append((k, parts[0]))
        out: dict[ItemKey, Document] = {}
        post_ids = sorted({p for _, _, p in feed} | {p for _, _, p in stored})
        posts: dict[str, tuple[dict[str, Any], str]] = {}
        if post_ids:
            for *row, visibility in source.rows(POSTS, [post_ids]):
                posts[row[0]] = (post_fields(*row), visibility)
        authors = {fields["authorId"] for fields, _ in posts.values()}
        authors |= {a for _, _, a in follows} | {a for _, a in marks}
        celebrities = self.celebrities(authors, source)
        if feed:
            asked = [(k, r, p) for k, r, p in feed if p in posts]
            pairs = [[r for _, r, _ in asked], [p for _, _, p in asked]]
            hidden = set(source.rows(HIDDEN_PAIRS, pairs)) if asked else set()
            for key, recipient, post in asked:
                fields = posts[post][0]
                author = fields["authorId"]
                if (recipient, post) in hidden or (recipient != author and author in celebrities):
                    continue
                out[key] = feed_doc(key.id, recipient, fields)
        for key, author, post in stored:
            if post in posts:
                fields, visibility = posts[post]
                if fields["authorId"] == author and visibility == "public" and author in celebrities:
                    out[key] = post_doc(fields)
        asked_follows = [(k, r, a) for k, r, a in follows if a in celebrities and r != a]
        if asked_follows:
            visible = set(
                source.rows(VISIBLE_FOLLOWS, [[r for _, r, _ in asked_follows], [a for _, _, a in asked_follows]])
            )
            for key, recipient, author in asked_follows:
                if (recipient, author) in visible:
                    out[key] = follow_doc(recipient, author)
        for key, author in marks:
            if author in celebrities:
                out[key] = author_doc(author)
        return out

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        celebs = f"({CELEBRITIES})"
        threshold = {"threshold": self.celebrity_followers}
        fanned = (
            f"SELECT k.r::text, {POST_COLUMNS} FROM posts po CROSS JOIN LATERAL "
            "(SELECT po.author_id UNION SELECT f.follower_id FROM follows f WHERE f.followee_id = po.author_id) "
            "AS k(r) "
            f"WHERE {visible_to('k.r')} AND (k.r = po.author_id OR po.author_id NOT IN {celebs})"
        )
        for recipient, *post in source.stream(fanned, threshold):
            yield item_of(recipient, post_fields(*post))
        stored = f"SELECT {POST_COLUMNS} FROM posts po WHERE po.visibility = 'public' AND po.author_id IN {celebs}"
        for row in source.stream(stored, threshold):
            fields = post_fields(*row)
            yield post_key(fields["authorId"], fields["postId"]), post_doc(fields)
        subscriptions = (
            "SELECT fo.follower_id::text, fo.followee_id::text FROM follows fo "
            f"WHERE fo.followee_id IN {celebs} AND {pair_visible('fo.follower_id', 'fo.followee_id')}"
        )
        for recipient, author in source.stream(subscriptions, threshold):
            yield follow_key(recipient, author), follow_doc(recipient, author)
        for (author,) in source.stream(f"SELECT followee_id::text FROM {celebs} AS c(followee_id)", threshold):
            yield author_key(author), author_doc(author)


DESCRIPTOR = Descriptor(
    "feed", FeedProjection(), "cosmos", CONTAINERS, documents=DOCUMENTS["feed"], stored=STORED["feed"],
    configured=lambda s: FeedProjection(s.feed.celebrity_followers), resources=("500m", "512Mi", "2", "1Gi"),
)
