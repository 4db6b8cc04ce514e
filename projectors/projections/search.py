"""The search indexes (Meilisearch in production, SQLite FTS5 locally): public posts and users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projectors.events.models import ChangeEvent, PostRow, UserRow
from projectors.model import Document, ItemKey
from projectors.projections.base import ItemKind, KindsProjection, Touch, iso
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import DOCUMENTS, STORED


def _ids(keys: Sequence[ItemKey]) -> list[Any]:
    return [[k.id for k in keys]]


def _post(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    post_id, author_id, body, topics, created_at = row
    return ItemKey("posts", post_id), {
        "id": post_id,
        "authorId": author_id,
        "body": body,
        "topics": list(topics),
        "createdAt": iso(created_at),
    }


def _user(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    user_id, handle, display_name, bio = row
    return ItemKey("users", user_id), {"id": user_id, "handle": str(handle), "displayName": display_name, "bio": bio}


class SearchProjection(KindsProjection):
    name = "search"
    tables = ("posts", "users")
    collections = ("posts", "users")
    kinds = (
        ItemKind(
            "posts",
            "SELECT id::text, author_id::text, body, topics, created_at FROM posts "
            "WHERE visibility = 'public' AND {where}",
            "id = ANY(%s::uuid[])",
            _ids,
            _post,
        ),
        ItemKind(
            "users",
            "SELECT id::text, handle, display_name, bio FROM users WHERE {where}",
            "id = ANY(%s::uuid[])",
            _ids,
            _user,
        ),
    )

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, PostRow):
                out.append(ItemKey("posts", row.id))
            elif isinstance(row, UserRow):
                out.append(ItemKey("users", row.id))
        return out


DESCRIPTOR = Descriptor(
    "search", SearchProjection(), "search", documents=DOCUMENTS["search"], stored=STORED["search"],
    resources=("250m", "384Mi", "1", "768Mi"),
)
