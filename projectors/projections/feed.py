"""Cosmos ``userFeed`` (partition key ``/recipientId``): who sees which post.

Item ``<recipientId>:<postId>`` exists when the recipient is the post's author, or the post is public
and the recipient follows the author, has not blocked or muted them, and is not blocked by them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from projectors.events.models import BlockRow, ChangeEvent, FollowRow, MuteRow, PostRow
from projectors.projections.base import Projection, Touch, iso, uuid_prefix
from projectors.projections.model import Document, ItemKey, ProjectionStore
from projectors.runtime.source import PostgresSource

COLLECTION = "userFeed"
PREVIEW_CHARS = 140


def visible_to(recipient: str) -> str:
    """The feed rule, in SQL, for post ``po`` and the recipient column ``recipient``. The one place
    it is written: the projector and ``verify`` both use it."""
    return f"""({recipient} = po.author_id OR (po.visibility = 'public'
        AND EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = {recipient} AND f.followee_id = po.author_id)
        AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = {recipient} AND b.blocked_id = po.author_id)
        AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = po.author_id AND b.blocked_id = {recipient})
        AND NOT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = {recipient} AND m.muted_id = po.author_id)))"""


POST_COLUMNS = "po.id::text, po.author_id::text, po.created_at, po.body, po.topics"
ITEM_COLUMNS = f"k.r::text, {POST_COLUMNS}"
# A post reaches thousands of feeds: each post's columns are one query (read and converted once per
# post, not once per recipient), and the (recipient, post) pairs of existing posts that the rule
# hides another. Hidden pairs are few (blocks, mutes, unfollows, private posts) where visible ones
# are most: reading them back cost more than the rest of a batch (rows parsed, keys rebuilt).
HIDDEN_PAIRS = (
    "SELECT k.r::text, k.p::text FROM unnest(%s::uuid[], %s::uuid[]) AS k(r, p) "
    f"JOIN posts po ON po.id = k.p WHERE NOT {visible_to('k.r')}"
)
POSTS = f"SELECT {POST_COLUMNS} FROM posts po WHERE po.id = ANY(%s::uuid[])"
SPEC_ALL = (
    f"SELECT {ITEM_COLUMNS} FROM posts po CROSS JOIN LATERAL "
    "(SELECT po.author_id UNION SELECT f.follower_id FROM follows f WHERE f.followee_id = po.author_id) AS k(r) "
    f"WHERE {visible_to('k.r')}"
)


def feed_key(recipient_id: str, post_id: str) -> ItemKey:
    return ItemKey(COLLECTION, f"{recipient_id}:{post_id}", recipient_id)


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


def item_of(recipient: str, fields: dict[str, Any]) -> tuple[ItemKey, Document]:
    key = feed_key(recipient, fields["postId"])
    return key, feed_doc(key.id, recipient, fields)


def feed_item(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    recipient, *post = row
    return item_of(recipient, post_fields(*post))


@dataclass(frozen=True, slots=True)
class PostTouch:
    """Every feed item of a post: its author's, its author's followers', and whatever the store
    holds for it (``lookup``: only when the change can take the post away from someone)."""

    post_id: str
    author_id: str
    lookup: bool


@dataclass(frozen=True, slots=True)
class PairTouch:
    """Every feed item of ``recipient`` for a post of ``author``."""

    recipient_id: str
    author_id: str
    lookup: bool


class FeedProjection(Projection):
    name = "feed"
    tables = ("posts", "follows", "blocks", "mutes")
    collections = (COLLECTION,)

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        removing = event.op == "d"
        for row in event.rows():
            if isinstance(row, PostRow):
                out.append(PostTouch(row.id, row.author_id, lookup=event.op != "c"))
            elif isinstance(row, FollowRow):
                out.append(PairTouch(row.follower_id, row.followee_id, lookup=removing))
            elif isinstance(row, MuteRow):
                out.append(PairTouch(row.muter_id, row.muted_id, lookup=not removing))
            elif isinstance(row, BlockRow):
                out += [
                    PairTouch(row.blocker_id, row.blocked_id, lookup=not removing),
                    PairTouch(row.blocked_id, row.blocker_id, lookup=not removing),
                ]
        return out

    def expand(self, touches: Mapping[Touch, int], source: PostgresSource, held: ProjectionStore) -> set[ItemKey]:
        keys: set[ItemKey] = set()
        posts = [t for t in touches if isinstance(t, PostTouch)]
        pairs = [t for t in touches if isinstance(t, PairTouch)]
        if posts:
            followers: dict[str, list[str]] = defaultdict(list)
            authors = sorted({t.author_id for t in posts})
            for followee, follower in source.rows(
                "SELECT followee_id::text, follower_id::text FROM follows WHERE followee_id = ANY(%s::uuid[])",
                [authors],
            ):
                followers[followee].append(follower)
            for pt in posts:
                keys.add(feed_key(pt.author_id, pt.post_id))
                keys.update(feed_key(f, pt.post_id) for f in followers[pt.author_id])
                if pt.lookup:
                    keys.update(held.find_keys(COLLECTION, {"postId": pt.post_id}))
        if pairs:
            posts_of: dict[str, list[str]] = defaultdict(list)
            authors = sorted({t.author_id for t in pairs})
            for author, post in source.rows(
                "SELECT author_id::text, id::text FROM posts WHERE author_id = ANY(%s::uuid[])", [authors]
            ):
                posts_of[author].append(post)
            for t in pairs:
                keys.update(feed_key(t.recipient_id, p) for p in posts_of[t.author_id])
                if t.lookup:
                    keys.update(held.find_keys(COLLECTION, {"authorId": t.author_id}, partition=t.recipient_id))
        return keys

    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        ids = uuid_prefix(2)  # <recipient uuid>:<post uuid>, nothing more (a store may hold anything)
        wanted: list[ItemKey] = []
        recipients: list[str] = []
        post_ids: list[str] = []
        for k in set(keys):
            if k.id.count(":") == 1 and ids.match(k.id):
                recipient, post = k.id.split(":")
                if k.partition == recipient:  # else not an item of this projection: removed
                    wanted.append(k)
                    recipients.append(recipient)
                    post_ids.append(post)
        if not wanted:
            return {}
        posts = {row[0]: post_fields(*row) for row in source.rows(POSTS, [list(set(post_ids))])}
        if not posts:
            return {}
        hidden = set(source.rows(HIDDEN_PAIRS, [recipients, post_ids]))
        out: dict[ItemKey, Document] = {}
        for key, recipient, post in zip(wanted, recipients, post_ids, strict=True):
            fields = posts.get(post)
            if fields is not None and (recipient, post) not in hidden:
                out[key] = feed_doc(key.id, recipient, fields)
        return out

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        for row in source.stream(SPEC_ALL):
            yield feed_item(row)
