"""Cosmos ``counters`` (partition key ``/subjectId``): exact counts, always read from the source.

A change never increments anything: it names the counters it may have changed, and the runtime
writes their current count, so duplicates and replays cannot make a counter drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projectors.events.models import ChangeEvent, FollowRow, PostRow, ReactionRow, ReplyRow, UserRow
from projectors.model import Document, ItemKey
from projectors.projections.base import ItemKind, KindsProjection, Touch
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import DOCUMENTS, STORED

COLLECTION = "counters"


def counter_key(subject_id: str, kind: str) -> ItemKey:
    return ItemKey(COLLECTION, f"{subject_id}:{kind}", subject_id)


def _counter(kind: str, subject: str, counted: str, join: str, column: str) -> ItemKind:
    """``kind`` counter of every row of ``subject``: the ``counted`` rows matching ``join``."""

    def item(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
        subject_id, count = str(row[0]), int(row[1])
        key = counter_key(subject_id, kind)
        return key, {"id": key.id, "subjectId": subject_id, "kind": kind, "count": count}

    def params(keys: Sequence[ItemKey]) -> list[Any]:
        return [[k.partition for k in keys]]

    return ItemKind(
        collection=COLLECTION,
        suffix=f":{kind}",
        sql=(
            f"SELECT s.id::text, count(x.{column}) FROM {subject} s LEFT JOIN {counted} x ON {join} "
            "WHERE {where} GROUP BY s.id"
        ),
        key_where="s.id = ANY(%s::uuid[])",
        key_params=params,
        item=item,
    )


class CountersProjection(KindsProjection):
    name = "counters"
    tables = ("posts", "users", "reactions", "replies", "follows")
    collections = (COLLECTION,)
    kinds = (
        _counter("likes", "posts", "reactions", "x.post_id = s.id AND x.kind = 'like'", "post_id"),
        _counter("replies", "posts", "replies", "x.post_id = s.id", "id"),
        _counter("followers", "users", "follows", "x.followee_id = s.id", "follower_id"),
        _counter("following", "users", "follows", "x.follower_id = s.id", "followee_id"),
        _counter("posts", "users", "posts", "x.author_id = s.id", "id"),
    )

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, ReactionRow):
                if row.kind == "like":
                    out.append(counter_key(row.post_id, "likes"))
            elif isinstance(row, ReplyRow):
                out.append(counter_key(row.post_id, "replies"))
            elif isinstance(row, FollowRow):
                out += [counter_key(row.follower_id, "following"), counter_key(row.followee_id, "followers")]
            elif isinstance(row, PostRow):
                out += [
                    counter_key(row.author_id, "posts"),
                    counter_key(row.id, "likes"),
                    counter_key(row.id, "replies"),
                ]
            elif isinstance(row, UserRow):
                out += [counter_key(row.id, k) for k in ("followers", "following", "posts")]
        return out


DESCRIPTOR = Descriptor(
    "counters", CountersProjection(), "cosmos", {COLLECTION: "/subjectId"},
    documents=DOCUMENTS["counters"], stored=STORED["counters"],
    cosmos_account="counters",
)
