"""Reads of the ``redis`` projection (profiles, leaderboards, trending topics), from Redis as the
reader ACL user, and the same answers from PostgreSQL for when Redis does not answer or is behind.

``ReadClient`` wraps each in its store-or-fallback rule (``read/answering.py``). Orders are Redis's own
(``ZREVRANGE``): score descending, then member descending in byte order; the fallback sorts the same
way (``COLLATE "C"``). A day outside the retention window has no board in Redis, and none here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter as MetricCounter

from projectors.errors import ConfigurationError
from projectors.model import ItemKey
from projectors.projections.base import is_uuid
from projectors.projections.redis_views import DAY_SQL, HOT_SCORE, window
from projectors.settings import Settings
from projectors.stores.generations import RedisPointer
from projectors.stores.redis_store import ALL_TIME, PROFILE, WANTED, RedisStore, page_of, prefix_of

FIRST_PAGES = MetricCounter(
    "projectors_read_feed_first_pages",
    "First feed pages read, by where they were answered from: redis (the page it holds), or the feed "
    "store (Redis did not hold it: the reader asked the redis worker for it)",
    ["answered_from"],
)

# leaderboard kind -> (the board in the key, its projection collection)
KINDS = {"authors": ("authors", "authorLikes"), "posts": ("posts", "hotPosts"), "topics": ("topics", "topics")}
DAY_RANGE = (
    "{col} >= (%(day)s::date)::timestamp AT TIME ZONE 'UTC' "
    "AND {col} < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'"
)
FALLBACK = {
    "authors": (
        "SELECT p.author_id::text, count(*) FROM reactions r JOIN posts p ON p.id = r.post_id "
        "WHERE r.kind = 'like' AND {when} GROUP BY 1"
    ),
    "posts": (
        f"SELECT p.id::text, {HOT_SCORE} FROM posts p WHERE p.visibility = 'public' AND {{when}}"
    ),
    "topics": (
        "SELECT t.topic, count(*) FROM posts p, unnest(p.topics) AS t(topic) "
        "WHERE p.visibility = 'public' AND {when} GROUP BY 1"
    ),
}
WHEN_COLUMN = {"authors": "r.created_at", "posts": "p.created_at", "topics": "p.created_at"}
RANKED = 'SELECT m, n FROM ({inner}) AS s(m, n) WHERE n > 0 ORDER BY n DESC, m COLLATE "C" DESC LIMIT %(limit)s'


def checked(settings: Settings, kind: str, day: str | None) -> str:
    """The board's day (today by default); an unknown kind or a malformed day is a caller's error."""
    if kind not in KINDS:
        raise ConfigurationError(f"unknown leaderboard {kind!r} (known: {', '.join(KINDS)})")
    day = day or datetime.now(UTC).date().isoformat()
    if day == ALL_TIME:
        if kind != "authors":
            raise ConfigurationError(f"the {kind} leaderboard has UTC days only, no all-time board")
        return day
    try:
        return date.fromisoformat(day).isoformat()
    except ValueError:
        raise ConfigurationError(f"a leaderboard day is YYYY-MM-DD or 'all', not {day!r}") from None


def in_window(settings: Settings, day: str) -> bool:
    return day == ALL_TIME or day in window(datetime.now(UTC), settings.redis.retention_days)


class RedisReads:
    """The reader's connection to Redis (read commands only), opened when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis

            r = self.settings.redis
            timeout = min(r.timeout_s, self.settings.read.store_timeout_s)
            self._client = redis.Redis(
                host=r.host, port=r.port, username=r.reader_user, password=r.reader_password.get_secret_value(),
                socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True,
            )
        return self._client

    def pointer(self) -> RedisPointer:
        r = self.settings.redis
        return RedisPointer(
            r.host, r.port, "", key=f"{r.prefix}.generation", username=r.reader_user,
            password=r.reader_password.get_secret_value(),
        )

    def prefix(self, generation: int) -> str:
        return prefix_of(self.settings.redis.prefix, generation)

    def profiles(self, ids: Sequence[str], generation: int) -> dict[str, dict[str, Any]]:
        pipe = self.client.pipeline(transaction=False)
        for user_id in ids:
            pipe.hgetall(f"{self.prefix(generation)}{PROFILE}:{user_id}")
        found = pipe.execute() if ids else []
        return {u: dict(RedisStore.decode_profile(f)) for u, f in zip(ids, found, strict=True) if f}

    def leaderboard(self, kind: str, day: str, limit: int, generation: int) -> list[dict[str, Any]]:
        board = KINDS[kind][0]
        ranked = self.client.zrevrange(f"{self.prefix(generation)}lb:{board}:{day}", 0, limit - 1, withscores=True)
        return [{"member": m, "score": int(s)} for m, s in ranked]

    def feed_page(self, user_id: str, generation: int) -> list[dict[str, Any]] | None:
        """The items of the user's first feed page Redis holds (None: it holds none), its TTL
        extended by the read (``GETEX``: a page leaves Redis only when its user stops reading it)."""
        key = f"{self.prefix(generation)}feed:{user_id}"
        value = self.client.getex(key, ex=self.settings.redis.feed_page_ttl_s)
        return None if value is None else list(page_of(value)["items"])

    def want(self, user_id: str, generation: int) -> None:
        """Ask the redis worker for the user's first feed page (the reader may add to this set only)."""
        self.client.zadd(f"{self.prefix(generation)}{WANTED}", {user_id: time.time()}, nx=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class PostgresRedisReads:
    """The same answers from PostgreSQL (the projection's rules, asked for one board or profiles)."""

    def __init__(self, postgres: Any) -> None:
        self.postgres = postgres  # read/fallback.PostgresReads

    def profiles(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        keys = [ItemKey(PROFILE, u) for u in ids if is_uuid(u)]
        return {k: dict(v) for k, v in self.postgres.items("redis", keys).items()}

    def leaderboard(self, settings: Settings, kind: str, day: str, limit: int) -> list[dict[str, Any]]:
        if not in_window(settings, day):
            return []
        if day == ALL_TIME:
            when = "TRUE"
        elif kind == "posts":  # a post's day is the day it was created
            when = f"{DAY_SQL.format('p.created_at')} = %(day)s"
        else:
            when = DAY_RANGE.format(col=WHEN_COLUMN[kind])
        sql = RANKED.format(inner=FALLBACK[kind].format(when=when))
        rows = self.postgres._rows(sql, {"day": day, "limit": limit})
        return [{"member": str(m), "score": int(n)} for m, n in rows]
