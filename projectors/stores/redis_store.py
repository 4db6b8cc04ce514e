"""The Redis store: items kept as Redis's own structures, written through a version guard that runs
in Redis (one Lua script call per collection per batch).

Layout, under a key prefix ``P`` (``projectors:`` for generation 0, ``projectors-g2:`` for 2):

- ``profile`` items (id = user id): a hash ``P profile:<id>`` of the profile's fields, versions in
  the hash ``P v:profile`` (field = id);
- leaderboard items (``authorLikes``, ``hotPosts``, ``topics``; id = ``<day>:<member>``, day
  ``YYYY-MM-DD`` or ``all``): a member of the sorted set ``P lb:<board>:<day>`` with the item's score,
  versions in ``P v:<collection>:<day>``. A day's set and its versions expire together at the end of
  the day plus the retention (``retention_days``); ``all`` never expires;
- ``feedPage`` items (id = user id): the string ``P feed:<id>``, ``<version>|<JSON page>``, held
  only while its reader reads it: written with a TTL of ``page_ttl_s`` when first asked for, each
  read extends it (``GETEX``), a refresh keeps it (``KEEPTTL``). Readers ask for a page they miss
  by adding the user to the sorted set ``P want:feed`` (``requested`` pops it).

A version record is ``<version>:1`` (live) or ``<version>:0`` (tombstone). The script applies an
operation only when its version is newer than the record, then SETs the structure (ZADD with the
score from the spec, never ZINCRBY), so duplicates, replays and reordering change nothing.
``live_items`` reads the structures readers read, so ``verify`` checks what is served.
The script names its keys in ARGV, not KEYS: fine on one server (local, compose, a primary with
replicas); Redis Cluster would need the collection's keys under one hash tag.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from projectors.errors import Severity, translated
from projectors.model import ApplyResult, Document, ItemFailure, ItemKey, Operation, Put
from projectors.stores.guard import newest_per_key
from projectors.stores.redis_scripts import GUARD, PAGE_GUARD

BOARDS = {"authorLikes": "authors", "hotPosts": "posts", "topics": "topics"}
FEED_PAGE = "feedPage"
WANTED = "want:feed"
REQUESTS_PER_CALL = 500
PROFILE = "profile"
PROFILE_INTS = ("followers", "following", "posts")
ALL_TIME = "all"


def prefix_of(base: str, generation: int) -> str:
    return f"{base}:" if generation == 0 else f"{base}-g{generation}:"


def day_expiry(day: str, retention_days: int) -> int:
    """When a day's sorted set expires (epoch seconds): the end of the UTC day plus the retention;
    0 for the all-time set."""
    if day == ALL_TIME:
        return 0
    end = datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), UTC)
    return int((end + timedelta(days=retention_days)).timestamp())


@dataclass(frozen=True)
class Place:
    """Where an item lives: its version record (``vkey``/``field``) and its structure."""

    vkey: str
    field: str
    key: str
    member: str
    expire_at: int


class RequestCounts:
    """Round trips to the server by kind (the worker's stats: ``runtime/stats.request_counts``)."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = defaultdict(float)

    def add(self, kind: str) -> None:
        self.counts[kind] += 1

    def snapshot(self) -> dict[str, float]:
        return dict(self.counts)


class RedisStore:
    """Implements :class:`~projectors.model.ProjectionStore` on one Redis server under ``prefix``."""

    def __init__(
        self, host: str, port: int, prefix: str, *, username: str | None = None, password: str | None = None,
        retention_days: int = 7, timeout_s: float = 5.0, page_ttl_s: int = 900,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.prefix, self.retention_days, self.page_ttl_s = prefix, retention_days, page_ttl_s
        self.requests = RequestCounts()
        self.redis = redis.Redis(
            host=host, port=port, username=username or None, password=password or None, socket_timeout=timeout_s,
            socket_connect_timeout=3.0, retry=Retry(NoBackoff(), 0), decode_responses=True,
        )
        self._guard = self.redis.register_script(GUARD)
        self._page_guard = self.redis.register_script(PAGE_GUARD)

    # -- layout -------------------------------------------------------------------------------------
    def place(self, key: ItemKey) -> Place:
        p = self.prefix
        if key.collection == PROFILE:
            return Place(f"{p}v:{PROFILE}", key.id, f"{p}{PROFILE}:{key.id}", "", 0)
        if key.collection == FEED_PAGE:
            return Place("", key.id, f"{p}feed:{key.id}", "", 0)
        board = BOARDS.get(key.collection)
        day, sep, member = key.id.partition(":")
        if board is None or not sep or not member:
            raise ValueError(f"not an item of the Redis store: {key}")
        if day != ALL_TIME:
            date.fromisoformat(day)  # a day or a ValueError
        expire = day_expiry(day, self.retention_days)
        return Place(f"{p}v:{key.collection}:{day}", member, f"{p}lb:{board}:{day}", member, expire)

    @staticmethod
    def encode(collection: str, doc: Document) -> str:
        if collection == PROFILE:
            return json.dumps([v for k in sorted(doc) for v in (k, str(doc[k]))])
        if collection == FEED_PAGE:
            return json.dumps(doc, separators=(",", ":"), sort_keys=True)
        return str(int(doc["score"]))

    @staticmethod
    def decode_profile(fields: Mapping[str, str]) -> Document:
        return {k: int(v) if k in PROFILE_INTS else v for k, v in fields.items()}

    # -- writes -------------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        failures: list[ItemFailure] = []
        groups: dict[str, list[tuple[Operation, Place]]] = defaultdict(list)
        for op in newest:
            try:
                groups[op.key.collection].append((op, self.place(op.key)))
            except (ValueError, KeyError) as exc:
                failures.append(ItemFailure(op, exc, Severity.REFUSED))
        changed = stale = unchanged = 0
        for collection, group in groups.items():
            if collection == FEED_PAGE:
                outcomes = self._call_guard(self._page_guard, self._page_args(group), group, failures)
            else:
                outcomes = self._call_guard(self._guard, self._args(collection, group), group, failures)
            changed += outcomes.count("c")
            stale += outcomes.count("s")
            unchanged += outcomes.count("u")
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _args(self, collection: str, group: Sequence[tuple[Operation, Place]]) -> list[str | int]:
        args: list[str | int] = []
        hashed = collection == PROFILE
        for op, at in group:
            if isinstance(op, Put):
                kind, payload = ("h" if hashed else "z"), self.encode(collection, op.doc)
            else:
                kind, payload = ("hr" if hashed else "zr"), ""
            args += [at.vkey, at.field, op.version, kind, at.key, at.member, payload, at.expire_at]
        return args

    def _page_args(self, group: Sequence[tuple[Operation, Place]]) -> list[str | int]:
        args: list[str | int] = [self.page_ttl_s]
        for op, at in group:
            payload = self.encode(FEED_PAGE, op.doc) if isinstance(op, Put) else ""
            args += [at.key, op.version, "p" if isinstance(op, Put) else "pr", payload]
        return args

    def _call_guard(
        self, script: Any, args: list[str | int], group: Sequence[tuple[Operation, Place]], failures: list[ItemFailure]
    ) -> list[str]:
        """One guard call; its operations' failures reported (none applied) when it fails."""
        try:
            self.requests.add("guard")
            return list(script(keys=[], args=args))
        except Exception as exc:
            level = self.severity(exc)
            failures += [ItemFailure(op, exc, level) for op, _ in group]
            return []

    @staticmethod
    def severity(exc: Exception) -> Severity:
        import redis

        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)):
            return Severity.RETRIABLE
        if isinstance(exc, (redis.AuthenticationError, redis.exceptions.NoPermissionError)):
            return Severity.CONFIGURATION
        if isinstance(exc, redis.ResponseError) and str(exc).startswith(("OOM", "READONLY", "BUSY", "MASTERDOWN")):
            return Severity.RETRIABLE
        return Severity.REFUSED

    # -- reads --------------------------------------------------------------------------------------
    def _scan(self, pattern: str) -> Iterator[str]:
        self.requests.add("scan")
        yield from self.redis.scan_iter(match=pattern, count=1000)

    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        if collection == FEED_PAGE:
            start = len(f"{self.prefix}feed:")
            users = [key[start:] for key in self._scan(f"{self.prefix}feed:*")]
            for first in range(0, len(users), 1000):
                yield from self.read_items([ItemKey(FEED_PAGE, u) for u in users[first : first + 1000]]).items()
            return
        if collection == PROFILE:
            vkeys = [f"{self.prefix}v:{PROFILE}"]
        elif collection in BOARDS:
            vkeys = sorted(self._scan(f"{self.prefix}v:{collection}:*"))
        else:
            return
        for vkey in vkeys:
            ids: list[str] = []
            for field, record in self.redis.hscan_iter(vkey, count=1000):
                if record.endswith(":1"):
                    ids.append(field if collection == PROFILE else f"{vkey.rsplit(':', 1)[1]}:{field}")
            for start in range(0, len(ids), 1000):
                chunk = [ItemKey(collection, i) for i in ids[start : start + 1000]]
                yield from self.read_items(chunk).items()

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """Each key's structure as readers see it (absent: no item, a tombstone or an expired day)."""
        wanted: list[tuple[ItemKey, Place]] = []
        for key in keys:
            try:
                wanted.append((key, self.place(key)))
            except ValueError:
                continue
        if not wanted:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for key, at in wanted:
            if key.collection == FEED_PAGE:
                pipe.exists(at.key)  # a page holds its version itself
                pipe.get(at.key)
                continue
            pipe.hget(at.vkey, at.field)
            if key.collection == PROFILE:
                pipe.hgetall(at.key)
            else:
                pipe.zscore(at.key, at.member)
        self.requests.add("read")
        replies = pipe.execute()
        out: dict[ItemKey, Document] = {}
        for n, (key, _at) in enumerate(wanted):
            record, value = replies[2 * n], replies[2 * n + 1]
            if key.collection == FEED_PAGE:
                if value is not None:
                    out[key] = page_of(value)
                continue
            if record is None or not record.endswith(":1") or value is None or value == {}:
                continue  # a held structure without a live record is not an item (verify: extra)
            if key.collection == PROFILE:
                out[key] = self.decode_profile(value)
            else:
                day, _, member = key.id.partition(":")
                out[key] = {"day": day, "member": member, "score": int(value)}
        return out

    # -- the feed pages readers use (``CachedItems``) ---------------------------------------------------
    def held_keys(self, keys: Sequence[ItemKey]) -> set[ItemKey]:
        """Which of ``keys`` (feed pages) exist now: one pipelined ``EXISTS`` each."""
        pages = [k for k in keys if k.collection == FEED_PAGE]
        if not pages:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for key in pages:
            pipe.exists(self.place(key).key)
        self.requests.add("held")
        return {key for key, found in zip(pages, pipe.execute(), strict=True) if found}

    def requested(self, wait_s: float) -> list[ItemKey]:
        """The pages readers asked for and missed (``P want:feed``), popped: waits up to ``wait_s``
        for the first, then takes up to ``REQUESTS_PER_CALL`` at once."""
        want = f"{self.prefix}{WANTED}"
        self.requests.add("requested")
        first = self.redis.bzpopmin(want, timeout=wait_s)
        if not first:
            return []
        more: list[Any] = list(self.redis.zpopmin(want, REQUESTS_PER_CALL - 1) or [])
        users = [str(first[1]), *(str(pair[0]) for pair in more)]
        return [ItemKey(FEED_PAGE, user) for user in users]

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return [k for k, doc in self.live_items(collection) if all(str(doc.get(f)) == v for f, v in equals.items())]

    # -- life cycle ---------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Nothing to create; loads the guard script so the first batch pays no extra round trip."""
        self.requests.add("script_load")
        try:
            self.redis.script_load(GUARD)
            self.redis.script_load(PAGE_GUARD)
        except Exception as exc:
            raise translated("redis: load the version guard", exc, self.severity(exc)) from exc

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception:
            return False

    def drop(self) -> None:
        """Delete every key under this store's prefix."""
        batch: list[str] = []
        try:
            for key in self._scan(f"{self.prefix}*"):
                batch.append(key)
                if len(batch) >= 1000:
                    self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                self.redis.unlink(*batch)
        except Exception as exc:
            raise translated(f"redis: drop {self.prefix}*", exc, self.severity(exc)) from exc

    def close(self) -> None:
        self.redis.close()


def page_of(value: str) -> Document:
    """A stored feed page (``<version>|<JSON>``) as its document."""
    return dict(json.loads(value.split("|", 1)[1]))


def reader(settings: Any, prefix: str) -> Any:
    """A plain ``redis.Redis`` client as the reader ACL user (read commands only), for read services."""
    import redis

    r = settings.redis
    return redis.Redis(
        host=r.host, port=r.port, username=r.reader_user, password=r.reader_password.get_secret_value(),
        socket_timeout=min(r.timeout_s, 2.0), socket_connect_timeout=1.0, decode_responses=True,
    )
