"""The documents read services get from each projection (the contract behind ``schemas/projections``).

Each store adds its own bookkeeping next to these fields: Cosmos items carry ``sourceVersion`` and
``deleted`` (tombstones: query ``c.deleted = false``); graph elements carry ``v``; search documents
carry ``sourceVersion``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from projectors.events.models import Uuid

Timestamp = str  # ISO-8601, UTC, microseconds, "Z": 2026-11-22T23:06:15.362559Z


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedItem(Doc):
    """Cosmos ``userFeed`` item, partition key ``/recipientId``."""

    id: str = Field(description="<recipientId>:<postId>")
    recipientId: Uuid
    postId: Uuid
    authorId: Uuid
    createdAt: Timestamp
    bodyPreview: str = Field(max_length=140)
    topics: list[str]


class FeedPost(Doc):
    """Cosmos ``feedPosts`` item, partition key ``/authorId``: a public post of a celebrity, stored
    once and merged into each follower's page on read (``ReadClient.feed_page``)."""

    id: Uuid = Field(description="<postId>")
    postId: Uuid
    authorId: Uuid
    createdAt: Timestamp
    bodyPreview: str = Field(max_length=140)
    topics: list[str]


class FeedFollow(Doc):
    """Cosmos ``feedFollows`` item, partition key ``/recipientId``: the recipient sees the posts of
    this celebrity (follows, no block either way, no mute)."""

    id: str = Field(description="<recipientId>:<authorId>")
    recipientId: Uuid
    authorId: Uuid


class FeedAuthor(Doc):
    """Cosmos ``feedAuthors`` item, partition key ``/authorId``: the author is a celebrity (at least
    ``PROJECTORS_FEED_CELEBRITY_FOLLOWERS`` followers): fanned out on read."""

    id: Uuid = Field(description="<authorId>")
    authorId: Uuid


class CounterItem(Doc):
    """Cosmos ``counters`` item, partition key ``/subjectId``."""

    id: str = Field(description="<subjectId>:<kind>")
    subjectId: Uuid
    kind: Literal["likes", "replies", "followers", "following", "posts"]
    count: int = Field(ge=0)


class UserNode(Doc):
    id: Uuid
    handle: str


class PostNode(Doc):
    id: Uuid
    createdAt: Timestamp


class TopicNode(Doc):
    id: str
    name: str


class Edge(Doc):
    """A relationship: ``from`` and ``to`` are the endpoint node ids."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    from_: str = Field(alias="from")
    to: str
    kind: Literal["like", "love", "laugh"] | None = Field(default=None, description="REACTED only")
    replyId: Uuid | None = Field(default=None, description="REPLIED only")


class SearchPost(Doc):
    """Search index ``posts`` (public posts only); filterable: authorId, topics, createdAt."""

    id: Uuid
    authorId: Uuid
    body: str
    topics: list[str]
    createdAt: Timestamp


class SearchUser(Doc):
    """Search index ``users``."""

    id: Uuid
    handle: str
    displayName: str
    bio: str


# collection -> document model, per projection
DOCUMENTS: dict[str, dict[str, type[Doc]]] = {
    "feed": {"userFeed": FeedItem, "feedPosts": FeedPost, "feedFollows": FeedFollow, "feedAuthors": FeedAuthor},
    "counters": {"counters": CounterItem},
    "graph": {
        "User": UserNode,
        "Post": PostNode,
        "Topic": TopicNode,
        **{t: Edge for t in ("FOLLOWS", "AUTHORED", "REACTED", "REPLIED", "TAGGED", "BLOCKS")},
    },
    "search": {"posts": SearchPost, "users": SearchUser},
}
