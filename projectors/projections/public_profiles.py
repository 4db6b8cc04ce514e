"""Cosmos ``publicProfiles`` (partition key ``/userId``): a user's public profile, for discovery.

One item per user, id = the user's id: handle, display name, bio, and their counts (followers,
following, public posts). The bio is stored but left out of the container's indexing policy: it is
shown, never filtered or sorted on. Like every projection the item is read from PostgreSQL after a
change names it, so the counts are exact and a replay changes nothing.

This module is the whole projection (docs/extending.md walks through it): the item's model, its SQL
spec, what a change touches, and its descriptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from projectors.events.models import ChangeEvent, FollowRow, PostRow, UserRow, Uuid
from projectors.model import Document, ItemKey
from projectors.projections.base import ItemKind, KindsProjection, Touch, iso
from projectors.projections.descriptor import Container, Descriptor
from projectors.projections.documents import Doc, Timestamp, cosmos_container

COLLECTION = "publicProfiles"


class PublicProfile(Doc):
    """Cosmos ``publicProfiles`` item, partition key ``/userId``."""

    id: Uuid = Field(description="<userId>")
    userId: Uuid
    handle: str
    displayName: str
    bio: str = Field(description="stored, not indexed")
    followers: int = Field(ge=0, description="users following them")
    following: int = Field(ge=0, description="users they follow")
    posts: int = Field(ge=0, description="their public posts")
    joinedAt: Timestamp


def profile_key(user_id: str) -> ItemKey:
    return ItemKey(COLLECTION, user_id, user_id)


def _item(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    user_id, handle, display_name, bio, followers, following, posts, created_at = row
    key = profile_key(str(user_id))
    return key, {
        "id": key.id,
        "userId": key.id,
        "handle": str(handle),
        "displayName": display_name,
        "bio": bio,
        "followers": int(followers),
        "following": int(following),
        "posts": int(posts),
        "joinedAt": iso(created_at),
    }


def _ids(keys: Sequence[ItemKey]) -> list[Any]:
    return [[k.id for k in keys]]


# the spec: a profile for every user, counts by index lookups per user
PROFILES = ItemKind(
    collection=COLLECTION,
    sql=(
        "SELECT u.id::text, u.handle::text, u.display_name, u.bio, "
        "(SELECT count(*) FROM follows f WHERE f.followee_id = u.id), "
        "(SELECT count(*) FROM follows f WHERE f.follower_id = u.id), "
        "(SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.visibility = 'public'), "
        "u.created_at FROM users u WHERE {where}"
    ),
    key_where="u.id = ANY(%s::uuid[])",
    key_params=_ids,
    item=_item,
    # every profile at once: one pass over each table instead of three lookups per user
    all_sql=(
        "SELECT u.id::text, u.handle::text, u.display_name, u.bio, coalesce(fr.n, 0), coalesce(fg.n, 0), "
        "coalesce(po.n, 0), u.created_at FROM users u "
        "LEFT JOIN (SELECT followee_id AS id, count(*) AS n FROM follows GROUP BY 1) fr ON fr.id = u.id "
        "LEFT JOIN (SELECT follower_id AS id, count(*) AS n FROM follows GROUP BY 1) fg ON fg.id = u.id "
        "LEFT JOIN (SELECT author_id AS id, count(*) AS n FROM posts WHERE visibility = 'public' GROUP BY 1) po "
        "ON po.id = u.id"
    ),
)


class PublicProfilesProjection(KindsProjection):
    name = "publicProfiles"
    tables = ("users", "follows", "posts")
    collections = (COLLECTION,)
    kinds = (PROFILES,)

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, UserRow):
                out.append(profile_key(row.id))
            elif isinstance(row, FollowRow):
                out += [profile_key(row.follower_id), profile_key(row.followee_id)]
            elif isinstance(row, PostRow):
                out.append(profile_key(row.author_id))  # posts has REPLICA IDENTITY FULL: a delete names it
        return out


DESCRIPTOR = Descriptor(
    "publicProfiles",
    PublicProfilesProjection(),
    "cosmos",
    {COLLECTION: Container("/userId", unindexed=("/bio/?",))},
    documents={COLLECTION: PublicProfile},
    stored={COLLECTION: cosmos_container(PublicProfile, "userId")},
)
