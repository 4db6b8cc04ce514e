"""The documents read services get from each projection (the contract behind ``schemas/projections``).

Two layers:

- the projection's documents (:data:`DOCUMENTS`): the fields a projection derives from the source
  rows, what ``verify`` compares;
- the stored items (:data:`STORED`): what a read service gets from each store's own client, those
  fields plus the store's bookkeeping, tombstones included. ``schemas/projections`` is generated from
  these. Cosmos items carry ``sourceVersion``, ``deleted`` and ``ttl`` and the system properties
  Cosmos adds (``_rid``, ``_self``, ``_etag``, ``_attachments``, ``_ts``); a removal patches the item
  into a tombstone (``deleted: true``, ``ttl``: seconds until it expires). Graph nodes and
  relationships carry ``v``; a removal leaves a ``Tombstone`` node. Search documents come from the
  search client as the projection wrote them (Meilisearch's raw documents add ``sourceVersion``,
  ``deleted``, ``createdAtTs``, and its tombstones are ``{id, sourceVersion, deleted: true}``).

Stable contract: the projection's fields, and ``deleted`` (a raw Cosmos query filters
``c.deleted = false``). Internal: every other bookkeeping field (its name, values and presence may
change without notice).
"""

from __future__ import annotations

from copy import copy
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema

from projectors.events.models import Uuid

Timestamp = str  # ISO-8601, UTC, microseconds, "Z": 2026-11-22T23:06:15.362559Z
INTERNAL = "internal: "


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


class NotificationItem(Doc):
    """Cosmos ``notifications`` item, partition key ``/recipientId``: a new follower (``follow``), or
    the reactions or replies to one of the recipient's posts, grouped (one item per post)."""

    id: str = Field(description="<recipientId>:follow:<followerId> | <recipientId>:reactions|replies:<postId>")
    recipientId: Uuid
    kind: Literal["follow", "reactions", "replies"]
    postId: Uuid | None = Field(description="the post (null for a follow)")
    actorIds: list[Uuid] = Field(max_length=3, description="the latest actors, newest first (at most three)")
    count: int = Field(ge=1, description="the exact number of users who acted (followed, reacted, replied)")
    latestAt: Timestamp = Field(description="the time of the latest activity")
    expiresAt: Timestamp = Field(description="latestAt + 30 days: the item is deleted then (ttl)")
    read: bool = Field(description="latestAt is at or before the recipient's notification_reads.read_up_to")


class UnreadNotifications(Doc):
    """Cosmos ``notifications`` item ``<recipientId>:unreadNotifications``: the recipient's unread
    count, present while one item is unread. The count at a time is the number of ``unreadExpiresAt``
    after it (``ReadClient.unread_count``): exact as items expire with no event."""

    id: str = Field(description="<recipientId>:unreadNotifications")
    recipientId: Uuid
    kind: Literal["unreadNotifications"]
    count: int = Field(ge=1, description="unread items when it was written")
    expiresAt: Timestamp = Field(description="the last of unreadExpiresAt: the item is deleted then (ttl)")
    unreadExpiresAt: list[Timestamp] = Field(min_length=1, description="each unread item's expiresAt, oldest first")


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


# collection -> document model (or a union of them), per projection
DOCUMENTS: dict[str, dict[str, Any]] = {
    "feed": {"userFeed": FeedItem, "feedPosts": FeedPost, "feedFollows": FeedFollow, "feedAuthors": FeedAuthor},
    "counters": {"counters": CounterItem},
    "graph": {
        "User": UserNode,
        "Post": PostNode,
        "Topic": TopicNode,
        **{t: Edge for t in ("FOLLOWS", "AUTHORED", "REACTED", "REPLIED", "TAGGED", "BLOCKS")},
    },
    "search": {"posts": SearchPost, "users": SearchUser},
    "notifications": {"notifications": NotificationItem | UnreadNotifications},
}


# -- stored items: what each store's client returns ------------------------------------------------


def _absent_not_null(schema: dict[str, Any]) -> None:
    """An optional field is absent or of its type, never null: the schema shows no default."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


Absent = SkipJsonSchema[None]  # an optional field: absent from an item, never null in it


class Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=_absent_not_null)


def _optional(info: FieldInfo) -> FieldInfo:
    out = copy(info)
    out.default = None
    return out


def _tombstone(doc: type[Doc], base: type[Stored], required: tuple[str, ...], about: str) -> type[Stored]:
    """``doc``'s fields on ``base``, only ``required`` of them required."""
    fields: dict[str, Any] = {
        name: (info.annotation, info if name in required else _optional(info))
        for name, info in doc.model_fields.items()
    }
    return cast(type[Stored], create_model(f"{doc.__name__}Tombstone", __base__=base, __doc__=about, **fields))


def _stored(doc: type[Doc], base: type[Stored]) -> type[Stored]:
    return cast(type[Stored], create_model(f"{doc.__name__}Stored", __base__=(doc, base), __doc__=doc.__doc__))


class CosmosSystem(Stored):
    """The properties Cosmos DB adds to every item (point reads and ``SELECT *`` return them)."""

    rid: str | Absent = Field(None, alias="_rid", description=INTERNAL + "Cosmos DB resource id")
    self_: str | Absent = Field(None, alias="_self", description=INTERNAL + "Cosmos DB resource link")
    etag: str | Absent = Field(None, alias="_etag", description=INTERNAL + "Cosmos DB entity tag")
    attachments: str | Absent = Field(None, alias="_attachments", description=INTERNAL + "Cosmos DB attachments link")
    ts: int | Absent = Field(None, alias="_ts", description=INTERNAL + "Cosmos DB last write, seconds since the epoch")


SOURCE_VERSION = INTERNAL + "the version (a read ticket of the projector) of the write that last set the item"


class CosmosLive(CosmosSystem):
    sourceVersion: int = Field(ge=0, description=SOURCE_VERSION)
    deleted: Literal[False] = Field(description="false on a live item (raw queries filter c.deleted = false)")
    ttl: Literal[-1] | Absent = Field(
        None, description=INTERNAL + "-1, never expires (absent on an item created and not patched since)"
    )


class CosmosTombstone(CosmosSystem):
    sourceVersion: int = Field(ge=0, description=SOURCE_VERSION)
    deleted: Literal[True] = Field(description="true: the item was removed (a tombstone, never a live item)")
    ttl: int = Field(ge=1, description=INTERNAL + "seconds after its last write when Cosmos deletes the tombstone")


COSMOS_TOMBSTONE = (
    "A removed item (tombstone): a patch of the live item that set deleted, sourceVersion and ttl; it keeps "
    "the fields the item had, of which only the id and the partition key are promised. Cosmos deletes it "
    "when its ttl runs out."
)


class CosmosExpiring(CosmosSystem):
    sourceVersion: int = Field(ge=0, description=SOURCE_VERSION)
    deleted: Literal[False] = Field(description="false on a live item (raw queries filter c.deleted = false)")
    ttl: int = Field(ge=1, description=INTERNAL + "seconds after its last write when Cosmos deletes it (its expiresAt)")


def _expiring(doc: type[Doc], partition: str) -> Any:
    """A Cosmos item that expires (an ``expiresAt``), or its tombstone."""
    return _stored(doc, CosmosExpiring) | _tombstone(doc, CosmosTombstone, ("id", partition), COSMOS_TOMBSTONE)


def cosmos_container(doc: type[Doc], partition: str) -> Any:
    live = _stored(doc, CosmosLive)
    return live | _tombstone(doc, CosmosTombstone, ("id", partition), COSMOS_TOMBSTONE)


class Versioned(Stored):
    v: int = Field(ge=0, description=INTERNAL + "the version of the write that last set the element")


ENDPOINT = (
    "A node created as a relationship's endpoint before the node's own write arrived: its id alone, until "
    "that write sets the rest"
)


def _node(doc: type[Doc]) -> Any:
    endpoint = create_model(
        f"{doc.__name__}Endpoint", __base__=Stored, __doc__=ENDPOINT, id=(str, doc.model_fields["id"])
    )
    return _stored(doc, Versioned) | endpoint


class Relationship(Versioned):
    """A relationship's properties (``properties(r)``); its endpoints are the nodes it joins."""

    id: str


class ReactedRelationship(Relationship):
    kind: Literal["like", "love", "laugh"]


class RepliedRelationship(Relationship):
    replyId: Uuid


class GraphTombstone(Stored):
    """A ``Tombstone`` node, left by a removal: no older write of the element can bring it back."""

    key: str = Field(
        pattern=r"^(User|Post|Topic|FOLLOWS|AUTHORED|REACTED|REPLIED|TAGGED|BLOCKS):.",
        description=INTERNAL + "<label or relationship type>:<id> of the removed element",
    )
    v: int = Field(ge=0, description=INTERNAL + "the version of the removal")


RAW_MEILI = INTERNAL + "in Meilisearch's raw documents only (the search client leaves it out)"


class SearchRaw(Stored):
    sourceVersion: Annotated[int, Field(ge=0)] | Absent = Field(None, description=RAW_MEILI)
    deleted: Literal[False] | Absent = Field(None, description=RAW_MEILI)


class SearchPostRaw(SearchRaw):
    createdAtTs: float | Absent = Field(None, description=RAW_MEILI + "; createdAt in seconds since the epoch")


class SearchTombstone(Stored):
    """A removed document in Meilisearch's raw documents (the search client never returns one)."""

    id: str
    sourceVersion: int = Field(ge=0, description=RAW_MEILI)
    deleted: Literal[True] = Field(description=RAW_MEILI)


# collection -> the type of what a read service gets from the store's client, per projection
STORED: dict[str, dict[str, Any]] = {
    "feed": {
        "userFeed": cosmos_container(FeedItem, "recipientId"),
        "feedPosts": cosmos_container(FeedPost, "authorId"),
        "feedFollows": cosmos_container(FeedFollow, "recipientId"),
        "feedAuthors": cosmos_container(FeedAuthor, "authorId"),
    },
    "counters": {"counters": cosmos_container(CounterItem, "subjectId")},
    "graph": {
        "User": _node(UserNode),
        "Post": _node(PostNode),
        "Topic": _node(TopicNode),
        "Tombstone": GraphTombstone,
        **{t: Relationship for t in ("FOLLOWS", "AUTHORED", "TAGGED", "BLOCKS")},
        "REACTED": ReactedRelationship,
        "REPLIED": RepliedRelationship,
    },
    "search": {
        "posts": _stored(SearchPost, SearchPostRaw) | SearchTombstone,
        "users": _stored(SearchUser, SearchRaw) | SearchTombstone,
    },
    "notifications": {
        "notifications": _expiring(NotificationItem, "recipientId") | _expiring(UnreadNotifications, "recipientId"),
    },
}
