"""The Redis store: items kept as Redis's own structures, written through a version guard that runs
in Redis (one Lua script call per collection per batch).

Layout, under a key prefix ``P`` (``projectors:`` for generation 0, ``projectors-g2:`` for 2):

- ``profile`` items (id = user id): a hash ``P profile:<id>`` of the profile's fields, versions in
  the hash ``P v:profile`` (field = id);
- leaderboard items (``authorLikes``, ``hotPosts``, ``topics``; id = ``<day>:<member>``, day
  ``YYYY-MM-DD`` or ``all``): a member of the sorted set ``P lb:<board>:<day>`` with the item's score,
  versions in ``P v:<collection>:<day>``. A day's set and its versions expire together at the end of
  the day plus the retention (``retention_days``); ``all`` never expires.

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

# per operation: version key, field, version, op (h: put hash, hr: remove hash, z: put member,
# zr: remove member), structure key, member, payload, expire-at (0: never)
GUARD = """
local out = {}
for i = 1, #ARGV, 8 do
  local vkey, field, ver, op = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local key, member, payload, exp = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], tonumber(ARGV[i + 7])
  local held = redis.call('HGET', vkey, field)
  local hv, live = -1, false
  if held then
    local sep = string.find(held, ':', 1, true)
    hv = tonumber(string.sub(held, 1, sep - 1))
    live = string.sub(held, sep + 1) == '1'
  end
  if hv >= ver then
    out[#out + 1] = 's'
  else
    local changed = false
    local put = (op == 'h' or op == 'z')
    if op == 'z' then
      local cur = redis.call('ZSCORE', key, member)
      changed = (not cur) or tonumber(cur) ~= tonumber(payload)
      redis.call('ZADD', key, payload, member)
    elseif op == 'zr' then
      changed = redis.call('ZREM', key, member) == 1
    elseif op == 'h' then
      local want = cjson.decode(payload)
      local cur = redis.call('HGETALL', key)
      if #cur ~= #want then
        changed = true
      else
        local have = {}
        for j = 1, #cur, 2 do have[cur[j]] = cur[j + 1] end
        for j = 1, #want, 2 do
          if have[want[j]] ~= want[j + 1] then changed = true end
        end
      end
      if changed then
        redis.call('DEL', key)
        redis.call('HSET', key, unpack(want))
      end
    else
      changed = redis.call('DEL', key) == 1
    end
    redis.call('HSET', vkey, field, ARGV[i + 2] .. ':' .. (put and '1' or '0'))
    if exp > 0 then
      redis.call('EXPIREAT', vkey, exp)
      redis.call('EXPIREAT', key, exp)
    end
    out[#out + 1] = changed and 'c' or 'u'
  end
end
return out
"""

BOARDS = {"authorLikes": "authors", "hotPosts": "posts", "topics": "topics"}
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
        retention_days: int = 7, timeout_s: float = 5.0,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.prefix, self.retention_days = prefix, retention_days
        self.requests = RequestCounts()
        self.redis = redis.Redis(
            host=host, port=port, username=username or None, password=password or None, socket_timeout=timeout_s,
            socket_connect_timeout=3.0, retry=Retry(NoBackoff(), 0), decode_responses=True,
        )
        self._guard = self.redis.register_script(GUARD)

    # -- layout -------------------------------------------------------------------------------------
    def place(self, key: ItemKey) -> Place:
        p = self.prefix
        if key.collection == PROFILE:
            return Place(f"{p}v:{PROFILE}", key.id, f"{p}{PROFILE}:{key.id}", "", 0)
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
            args: list[str | int] = []
            for op, at in group:
                hashed = collection == PROFILE
                if isinstance(op, Put):
                    kind, payload = ("h" if hashed else "z"), self.encode(collection, op.doc)
                else:
                    kind, payload = ("hr" if hashed else "zr"), ""
                args += [at.vkey, at.field, op.version, kind, at.key, at.member, payload, at.expire_at]
            try:
                self.requests.add("guard")
                outcomes = self._guard(keys=[], args=args)
            except Exception as exc:
                level = self.severity(exc)
                failures += [ItemFailure(op, exc, level) for op, _ in group]
                continue
            changed += outcomes.count("c")
            stale += outcomes.count("s")
            unchanged += outcomes.count("u")
        return ApplyResult(changed, stale + dropped, unchanged, failures)

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
            if record is None or not record.endswith(":1") or value is None or value == {}:
                continue  # a held structure without a live record is not an item (verify: extra)
            if key.collection == PROFILE:
                out[key] = self.decode_profile(value)
            else:
                day, _, member = key.id.partition(":")
                out[key] = {"day": day, "member": member, "score": int(value)}
        return out

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return [k for k, doc in self.live_items(collection) if all(str(doc.get(f)) == v for f, v in equals.items())]

    # -- life cycle ---------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Nothing to create; loads the guard script so the first batch pays no extra round trip."""
        self.requests.add("script_load")
        try:
            self.redis.script_load(GUARD)
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


def reader(settings: Any, prefix: str) -> Any:
    """A plain ``redis.Redis`` client as the reader ACL user (read commands only), for read services."""
    import redis

    r = settings.redis
    return redis.Redis(
        host=r.host, port=r.port, username=r.reader_user, password=r.reader_password.get_secret_value(),
        socket_timeout=min(r.timeout_s, 2.0), socket_connect_timeout=1.0, decode_responses=True,
    )
