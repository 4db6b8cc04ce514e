"""The social graph (Neo4j in production, FalkorDB locally): users, posts, topics and their edges.

Node items: ``User {id, handle}``, ``Post {id, createdAt}``, ``Topic {id, name}``. Edge items
(collection = relationship type) carry ``from`` and ``to`` (endpoint ids) and their properties; ids
are derived from the source row key: ``FOLLOWS``/``BLOCKS`` ``<a>:<b>``, ``AUTHORED`` ``<user>:<post>``,
``REACTED`` ``<user>:<post>:<kind>``, ``REPLIED`` ``<replyId>``, ``TAGGED`` ``<post>:<topic>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from projectors.events.models import (
    UNAVAILABLE,
    BlockRow,
    ChangeEvent,
    FollowRow,
    PostRow,
    ReactionRow,
    ReplyRow,
    UserRow,
)
from projectors.graph_model import EDGE_TYPES, NODE_LABELS
from projectors.model import Document, ItemKey
from projectors.projections.base import ItemKind, KindsProjection, Touch, iso, split_ids
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import DOCUMENTS, STORED


def edge(rel: str, key_id: str, start: str, end: str, **props: Any) -> tuple[ItemKey, Document]:
    return ItemKey(rel, key_id), {"id": key_id, "from": start, "to": end, **props}


def _ids(keys: Sequence[ItemKey]) -> list[Any]:
    return [[k.id for k in keys]]


def _parts(n: int) -> Callable[[Sequence[ItemKey]], list[Any]]:
    def params(keys: Sequence[ItemKey]) -> list[Any]:
        return list(split_ids(keys, n))

    return params


def _user(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    return ItemKey("User", row[0]), {"id": row[0], "handle": str(row[1])}


def _post(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    return ItemKey("Post", row[0]), {"id": row[0], "createdAt": iso(row[1])}


def _topic(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    return ItemKey("Topic", row[0]), {"id": row[0], "name": row[0]}


def _pair(kind: str) -> Callable[[tuple[Any, ...]], tuple[ItemKey, Document]]:
    def item(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
        return edge(kind, f"{row[0]}:{row[1]}", row[0], row[1])

    return item


def _reacted(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    user, post, kind = row
    return edge("REACTED", f"{user}:{post}:{kind}", user, post, kind=kind)


def _replied(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    reply, author, post = row
    return edge("REPLIED", reply, author, post, replyId=reply)


def _tagged(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    post, topic = row
    return edge("TAGGED", f"{post}:{topic}", post, topic)


KINDS = (
    ItemKind("User", "SELECT id::text, handle FROM users WHERE {where}", "id = ANY(%s::uuid[])", _ids, _user),
    ItemKind("Post", "SELECT id::text, created_at FROM posts WHERE {where}", "id = ANY(%s::uuid[])", _ids, _post),
    ItemKind(
        "Topic",
        # which of the asked topics some post still carries: the scan stops at the first such post
        # (0.1 ms) instead of unnesting every post (25 ms at 44k posts, per batch); only a topic that
        # just left its last post scans the table. verify reads them all.
        "SELECT t FROM unnest(%s::text[]) AS t WHERE btrim(t) <> '' AND {where}",
        "EXISTS (SELECT 1 FROM posts p WHERE p.topics @> ARRAY[t])",
        _ids,
        _topic,
        uuid_parts=0,
        all_sql="SELECT DISTINCT t FROM posts p CROSS JOIN LATERAL unnest(p.topics) AS t WHERE btrim(t) <> ''",
    ),
    ItemKind(
        "FOLLOWS",
        "SELECT follower_id::text, followee_id::text FROM follows WHERE {where}",
        "(follower_id, followee_id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))",
        _parts(2),
        _pair("FOLLOWS"),
        uuid_parts=2,
    ),
    ItemKind(
        "AUTHORED",
        "SELECT author_id::text, id::text FROM posts WHERE {where}",
        "(author_id, id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))",
        _parts(2),
        _pair("AUTHORED"),
        uuid_parts=2,
    ),
    ItemKind(
        "REACTED",
        "SELECT user_id::text, post_id::text, kind FROM reactions WHERE {where}",
        "(user_id, post_id, kind) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[]))",
        _parts(3),
        _reacted,
        uuid_parts=2,
    ),
    ItemKind(
        "REPLIED",
        "SELECT id::text, author_id::text, post_id::text FROM replies WHERE {where}",
        "id = ANY(%s::uuid[])",
        _ids,
        _replied,
    ),
    ItemKind(
        "TAGGED",
        "SELECT DISTINCT p.id::text, t FROM posts p CROSS JOIN LATERAL unnest(p.topics) AS t "
        "WHERE btrim(t) <> '' AND {where}",
        "(p.id, t) IN (SELECT * FROM unnest(%s::uuid[], %s::text[]))",
        _parts(2),
        _tagged,
    ),
    ItemKind(
        "BLOCKS",
        "SELECT blocker_id::text, blocked_id::text FROM blocks WHERE {where}",
        "(blocker_id, blocked_id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))",
        _parts(2),
        _pair("BLOCKS"),
        uuid_parts=2,
    ),
)


class GraphProjection(KindsProjection):
    name = "graph"
    tables = ("users", "posts", "follows", "reactions", "replies", "blocks")
    collections = NODE_LABELS + EDGE_TYPES
    kinds = KINDS

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, UserRow):
                out.append(ItemKey("User", row.id))
            elif isinstance(row, PostRow):
                out += [ItemKey("Post", row.id), ItemKey("AUTHORED", f"{row.author_id}:{row.id}")]
                for topic in row.topics:
                    if topic != UNAVAILABLE and topic.strip(" "):  # a blank topic is not a topic
                        out += [ItemKey("Topic", topic), ItemKey("TAGGED", f"{row.id}:{topic}")]
            elif isinstance(row, FollowRow):
                out.append(ItemKey("FOLLOWS", f"{row.follower_id}:{row.followee_id}"))
            elif isinstance(row, BlockRow):
                out.append(ItemKey("BLOCKS", f"{row.blocker_id}:{row.blocked_id}"))
            elif isinstance(row, ReactionRow):
                out.append(ItemKey("REACTED", f"{row.user_id}:{row.post_id}:{row.kind}"))
            elif isinstance(row, ReplyRow):
                out.append(ItemKey("REPLIED", row.id))
        return out


DESCRIPTOR = Descriptor(
    "graph", GraphProjection(), "graph", documents=DOCUMENTS["graph"], stored=STORED["graph"],
    resources=("500m", "512Mi", "2", "1Gi"),
)
