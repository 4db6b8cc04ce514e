"""The HTTP read API's bodies (``read/api.py``): each answer's items are the projection's documents
(``projections/documents.py``, from which ``schemas/projections`` is generated too), wrapped with
where the answer came from and how fresh its projection is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from projectors.events.models import Uuid
from projectors.projections.documents import FeedItem, NotificationItem, SearchPost, SearchUser
from projectors.projections.redis_views import LeaderboardEntry, RedisProfile


class Freshness(BaseModel):
    projection: Literal["feed", "counters", "notifications", "graph", "search", "redis"]
    behind_s: float | None = Field(
        description="seconds the projection is behind its source, measured in the background (null: not known yet)"
    )


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["store", "postgres"] = Field(
        description="store: the projection's store answered; postgres: the store did not, and PostgreSQL did"
    )
    caught_up: bool | None = Field(
        description="with an `after` commit token: whether the projection had applied that write when the "
        "answer was read (null without a token)"
    )
    freshness: Freshness


class Paged(Answer):
    next_cursor: str | None = Field(
        description="the `cursor` of the next page; null on the last page. Opaque, bound to the list and user"
    )


class FeedPage(Paged):
    items: list[FeedItem]


class NotificationsPage(Paged):
    items: list[NotificationItem]


class UnreadCount(Answer):
    unread: int = Field(ge=0)


class Counters(Answer):
    counters: dict[str, dict[str, int]] = Field(
        description="{subjectId: {kind: count}}; a subject without counters has {}"
    )


class Suggestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Uuid
    handle: str
    mutual: int = Field(ge=1, description="how many of the user's followees follow them")


class Suggestions(Answer):
    items: list[Suggestion]


class PostHits(Answer):
    items: list[SearchPost]


class UserHits(Answer):
    items: list[SearchUser]


class Profiles(Answer):
    profiles: dict[str, RedisProfile] = Field(
        description="{userId: profile} (schemas/projections/redis/profile.json); a user without one is absent"
    )


class Leaderboard(Answer):
    kind: Literal["authors", "posts", "topics"]
    day: str = Field(pattern=r"^(all|\d{4}-\d{2}-\d{2})$", description="the board's UTC day, or all")
    items: list[LeaderboardEntry] = Field(
        description="the highest score first, then the member in reverse byte order (Redis's ZREVRANGE); "
        "schemas/projections/redis/authorLikes.json, hotPosts.json, topics.json"
    )


class InvalidParam(BaseModel):
    name: str
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(populate_by_name=True)
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] | None = Field(default=None, alias="invalid-params")


class Health(BaseModel):
    status: str
    source: Literal["store", "postgres"] | None = None
