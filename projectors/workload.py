"""Realistic social activity written to the source database (demo, tests, benchmarks).

Every operation of the app: users sign up and edit profiles, post (public or private, with topics),
edit and delete posts, reply, react, follow and unfollow, block and mute, read their notifications.
Follower counts follow a power law: a few authors attract most follows. The statements that write
each table and the operation mix are defined once, here, for two generators:

- :class:`SocialWorkload` (``projectors sample``, the demo, the tests): random operations on one
  connection, committed every few; an operation that finds nothing to do (a follow that exists, a
  delete of an empty table) changes nothing, and ``done`` counts the rows changed.
- the planned load of the benchmarks, shaped for volume: :func:`seed` writes a population with COPY
  in large transactions, :func:`bulk` writes a mix of operations many rows per transaction
  (pipelined, one round trip per transaction), :func:`steady` writes one operation per transaction
  at a paced rate and reports the commit time of every new public post, :func:`celebrity_post` is
  one post for a fan-out measurement.

Contract of the planned load: the :class:`Population` knows every row it wrote, so each statement
changes exactly the rows it was planned to (no key conflicts, no failed statements, no deletes of
missing rows) and the returned counters equal the rows changed, i.e. the change events capture
publishes (on the topics each delete is also followed by a tombstone). Deleting a post deletes its
replies and reactions by ``ON DELETE CASCADE``: those rows are counted as ``replies.cascade_delete``
and ``reactions.cascade_delete``. This holds while the population's rows are written by the planned
load alone, from one thread at a time.
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice
from typing import Any, Generic, LiteralString, TypeVar

import psycopg

from projectors.projections.notifications import MARK_READ

TOPICS = ("python", "kafka", "postgres", "graphs", "search", "music", "cats", "rust", "cooking", "travel")
WORDS = [
    "stream",
    "change",
    "capture",
    "event",
    "projection",
    "feed",
    "counter",
    "graph",
    "search",
    "replay",
    "offset",
    "partition",
    "broker",
    "slot",
    "snapshot",
    "lsn",
    "version",
    "batch",
    "commit",
    "follow",
    "reply",
    "like",
    "love",
    "laugh",
    "topic",
    "user",
    "post",
]


T = TypeVar("T", bound=Hashable)
Pair = tuple[uuid.UUID, uuid.UUID]
ReactionKey = tuple[uuid.UUID, uuid.UUID, str]  # post, user, kind

REACTION_KINDS = ("like", "like", "love", "laugh")
PUBLIC_SHARE = 0.85  # of new posts

# The operation mix, as relative weights, in the order drawn: the planned load's (OperationMix).
# SocialWorkload adds user deletes and notification reads (SOCIAL_EXTRA); the planned load leaves
# user deletes out: deleting a user cascades to an unbounded number of rows (10,000 follows for a
# celebrity), which is not load.
MIX: dict[str, float] = {
    "posts.insert": 14,
    "posts.update": 6,
    "posts.delete": 2,
    "replies.insert": 10,
    "replies.delete": 2,
    "reactions.insert": 18,
    "reactions.delete": 4,
    "follows.insert": 14,
    "follows.delete": 4,
    "blocks.insert": 2,
    "blocks.delete": 1,
    "mutes.insert": 2,
    "mutes.delete": 1,
    "users.insert": 3,
    "users.update": 3,
}

SOCIAL_EXTRA: dict[str, float] = {"users.delete": 0.3, "notification_reads.upsert": 3}

INSERT_USER: LiteralString = "INSERT INTO users (id, handle, display_name, bio) VALUES (%s, %s, %s, %s)"
UPDATE_USER: LiteralString = "UPDATE users SET bio = %s, updated_at = now() WHERE id = %s"
DELETE_USER: LiteralString = "DELETE FROM users WHERE id = %s"
INSERT_POST: LiteralString = "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, %s)"
UPDATE_POST_BODY: LiteralString = "UPDATE posts SET body = %s, updated_at = now() WHERE id = %s"
UPDATE_POST_VISIBILITY: LiteralString = "UPDATE posts SET visibility = %s, updated_at = now() WHERE id = %s"
TOGGLE_POST_VISIBILITY: LiteralString = (
    "UPDATE posts SET visibility = CASE visibility WHEN 'public' THEN 'private' ELSE 'public' END, "
    "updated_at = now() WHERE id = %s"
)
DELETE_POST: LiteralString = "DELETE FROM posts WHERE id = %s"
INSERT_REPLY: LiteralString = "INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, %s)"
DELETE_REPLY: LiteralString = "DELETE FROM replies WHERE id = %s"
INSERT_REACTION: LiteralString = "INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, %s)"
DELETE_REACTION: LiteralString = "DELETE FROM reactions WHERE post_id = %s AND user_id = %s AND kind = %s"
INSERT_FOLLOW: LiteralString = "INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)"
DELETE_FOLLOW: LiteralString = "DELETE FROM follows WHERE follower_id = %s AND followee_id = %s"
INSERT_BLOCK: LiteralString = "INSERT INTO blocks (blocker_id, blocked_id) VALUES (%s, %s)"
DELETE_BLOCK: LiteralString = "DELETE FROM blocks WHERE blocker_id = %s AND blocked_id = %s"
INSERT_MUTE: LiteralString = "INSERT INTO mutes (muter_id, muted_id) VALUES (%s, %s)"
DELETE_MUTE: LiteralString = "DELETE FROM mutes WHERE muter_id = %s AND muted_id = %s"

IF_NEW: LiteralString = " ON CONFLICT DO NOTHING"  # appended to an INSERT: a row that exists is left as is

COPY_USERS: LiteralString = "COPY users (id, handle, display_name, bio) FROM STDIN"
COPY_FOLLOWS: LiteralString = "COPY follows (follower_id, followee_id) FROM STDIN"
COPY_POSTS: LiteralString = "COPY posts (id, author_id, body, topics, visibility) FROM STDIN"


# -- the planned load (benchmarks) ---------------------------------------------------------------
class Bag(Generic[T]):
    """A set with O(1) add, remove and uniform random choice (a list plus each item's position)."""

    __slots__ = ("_items", "_where")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = []
        self._where: dict[T, int] = {}
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._where

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    @property
    def items(self) -> list[T]:
        """The members, in no particular order (do not modify)."""
        return self._items

    def add(self, item: T) -> None:
        if item not in self._where:
            self._where[item] = len(self._items)
            self._items.append(item)

    def remove(self, item: T) -> None:
        index = self._where.pop(item)
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._where[last] = index

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]


def new_id(rng: random.Random) -> uuid.UUID:
    """A random (version 4) UUID drawn from ``rng``: a seeded run writes the same ids."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def handle_of(user_id: uuid.UUID) -> str:
    return f"user_{user_id.hex[:16]}"


@dataclass(eq=False)
class Population:
    """What the load wrote and what still exists: the source of truth for choosing valid operations."""

    users: list[uuid.UUID]  # most followed first: celebrities, then by seeded follower count
    celebrities: list[uuid.UUID]
    seeded: Counter[str] = field(default_factory=Counter)  # rows written by seed(), per table
    popularity: list[float] = field(default_factory=list)  # cumulative weights over users[: len(popularity)]
    follows: Bag[Pair] = field(default_factory=Bag, repr=False)  # (follower, followee)
    reactions: Bag[ReactionKey] = field(default_factory=Bag, repr=False)
    replies: Bag[uuid.UUID] = field(default_factory=Bag, repr=False)
    blocks: Bag[Pair] = field(default_factory=Bag, repr=False)
    mutes: Bag[Pair] = field(default_factory=Bag, repr=False)
    visibility: dict[uuid.UUID, str] = field(default_factory=dict, repr=False)  # post -> public | private
    reply_post: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict, repr=False)
    post_replies: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict, repr=False)
    post_reactions: dict[uuid.UUID, set[ReactionKey]] = field(default_factory=dict, repr=False)
    _posts: Bag[uuid.UUID] = field(default_factory=Bag, repr=False)

    @property
    def posts(self) -> list[uuid.UUID]:
        """Ids of the posts that exist (do not modify; use add_post / remove_post)."""
        return self._posts.items

    # -- choosing ----------------------------------------------------------------------------------
    def random_user(self, rng: random.Random) -> uuid.UUID:
        return self.users[rng.randrange(len(self.users))]

    def popular_user(self, rng: random.Random) -> uuid.UUID:
        """A user chosen with probability proportional to 1 + seeded followers (preferential
        attachment: follows go mostly to the already popular)."""
        if not self.popularity:
            return self.random_user(rng)
        return self.users[bisect.bisect(self.popularity, rng.random() * self.popularity[-1])]

    def random_post(self, rng: random.Random) -> uuid.UUID | None:
        return self._posts.choice(rng) if self._posts else None

    def follower_counts(self) -> Counter[uuid.UUID]:
        """Followers per user now (users without followers are absent)."""
        return Counter(followee for _follower, followee in self.follows)

    # -- recording ---------------------------------------------------------------------------------
    def add_post(self, post_id: uuid.UUID, visibility: str) -> None:
        self._posts.add(post_id)
        self.visibility[post_id] = visibility

    def remove_post(self, post_id: uuid.UUID) -> tuple[int, int]:
        """Forget a deleted post with its replies and reactions; returns how many replies and
        reactions the delete cascaded to."""
        self._posts.remove(post_id)
        del self.visibility[post_id]
        replies = self.post_replies.pop(post_id, set())
        for reply_id in replies:
            self.replies.remove(reply_id)
            del self.reply_post[reply_id]
        reactions = self.post_reactions.pop(post_id, set())
        for key in reactions:
            self.reactions.remove(key)
        return len(replies), len(reactions)

    def add_reply(self, reply_id: uuid.UUID, post_id: uuid.UUID) -> None:
        self.replies.add(reply_id)
        self.reply_post[reply_id] = post_id
        self.post_replies.setdefault(post_id, set()).add(reply_id)

    def remove_reply(self, reply_id: uuid.UUID) -> None:
        self.replies.remove(reply_id)
        self.post_replies[self.reply_post.pop(reply_id)].discard(reply_id)

    def add_reaction(self, key: ReactionKey) -> None:
        self.reactions.add(key)
        self.post_reactions.setdefault(key[0], set()).add(key)

    def remove_reaction(self, key: ReactionKey) -> None:
        self.reactions.remove(key)
        self.post_reactions[key[0]].discard(key)


@dataclass(frozen=True, slots=True)
class Operation:
    """One planned statement; ``rows`` is every row it changes (cascades included)."""

    name: str
    query: LiteralString
    params: tuple[Any, ...]
    cascade: tuple[tuple[str, int], ...] = ()
    public_post: uuid.UUID | None = None  # set for a new public post

    @property
    def rows(self) -> int:
        return 1 + sum(n for _name, n in self.cascade)

    def count(self, counts: Counter[str]) -> None:
        counts[self.name] += 1
        for name, n in self.cascade:
            if n:
                counts[name] += n


class OperationMix:
    """Draws valid operations in the :data:`MIX` proportions and records each in the population at
    once (the caller must then execute it, in the order drawn)."""

    MIN_POSTS = 20  # posts are not deleted below this many

    def __init__(self, population: Population, rng: random.Random, weights: dict[str, float] | None = None) -> None:
        self.population, self.rng = population, rng
        mix = weights or MIX
        self._planners: dict[str, Callable[[], Operation | None]] = {
            "posts.insert": self.post_insert,
            "posts.update": self.post_update,
            "posts.delete": self.post_delete,
            "replies.insert": self.reply_insert,
            "replies.delete": self.reply_delete,
            "reactions.insert": self.reaction_insert,
            "reactions.delete": self.reaction_delete,
            "follows.insert": self.follow_insert,
            "follows.delete": self.follow_delete,
            "blocks.insert": self.block_insert,
            "blocks.delete": self.block_delete,
            "mutes.insert": self.mute_insert,
            "mutes.delete": self.mute_delete,
            "users.insert": self.user_insert,
            "users.update": self.user_update,
        }
        unknown = set(mix) - set(self._planners)
        if unknown:
            raise ValueError(f"unknown operations in the mix: {', '.join(sorted(unknown))}")
        self._kinds = [self._planners[name] for name in mix]
        self._cum_weights = list(accumulate(mix.values()))

    def next(self) -> Operation:
        """The next operation; one that is impossible right now (nothing to delete) is redrawn."""
        for _ in range(100):
            planner = self.rng.choices(self._kinds, cum_weights=self._cum_weights)[0]
            op = planner()
            if op is not None:
                return op
        return self.user_update()

    # -- users -------------------------------------------------------------------------------------
    def user_insert(self) -> Operation:
        uid = new_id(self.rng)
        self.population.users.append(uid)
        handle = handle_of(uid)
        return Operation("users.insert", INSERT_USER, (uid, handle, handle.replace("_", " "), text(self.rng, 6)))

    def user_update(self) -> Operation:
        return Operation("users.update", UPDATE_USER, (text(self.rng, 8), self.population.random_user(self.rng)))

    # -- posts -------------------------------------------------------------------------------------
    def post_insert(self) -> Operation:
        p, rng = self.population, self.rng
        pid = new_id(rng)
        author = p.popular_user(rng) if rng.random() < 0.5 else p.random_user(rng)
        visibility = "public" if rng.random() < PUBLIC_SHARE else "private"
        p.add_post(pid, visibility)
        params = (pid, author, text(rng, 12), rng.sample(TOPICS, rng.randint(0, 3)), visibility)
        return Operation("posts.insert", INSERT_POST, params, public_post=pid if visibility == "public" else None)

    def post_update(self) -> Operation | None:
        p, rng = self.population, self.rng
        pid = p.random_post(rng)
        if pid is None:
            return None
        if rng.random() < 0.5:
            return Operation("posts.update", UPDATE_POST_BODY, (text(rng, 10), pid))
        visibility = "private" if p.visibility[pid] == "public" else "public"
        p.visibility[pid] = visibility
        return Operation("posts.update", UPDATE_POST_VISIBILITY, (visibility, pid))

    def post_delete(self) -> Operation | None:
        p = self.population
        if len(p.posts) <= self.MIN_POSTS:
            return None
        pid = p.random_post(self.rng)
        assert pid is not None
        replies, reactions = p.remove_post(pid)
        cascade = (("replies.cascade_delete", replies), ("reactions.cascade_delete", reactions))
        return Operation("posts.delete", DELETE_POST, (pid,), cascade=cascade)

    # -- replies and reactions ---------------------------------------------------------------------
    def reply_insert(self) -> Operation | None:
        p, rng = self.population, self.rng
        pid = p.random_post(rng)
        if pid is None:
            return None
        rid = new_id(rng)
        p.add_reply(rid, pid)
        return Operation("replies.insert", INSERT_REPLY, (rid, pid, p.random_user(rng), text(rng, 5)))

    def reply_delete(self) -> Operation | None:
        p = self.population
        if not p.replies:
            return None
        rid = p.replies.choice(self.rng)
        p.remove_reply(rid)
        return Operation("replies.delete", DELETE_REPLY, (rid,))

    def reaction_insert(self) -> Operation | None:
        p, rng = self.population, self.rng
        for _ in range(5):
            pid = p.random_post(rng)
            if pid is None:
                return None
            key = (pid, p.random_user(rng), rng.choice(REACTION_KINDS))
            if key not in p.reactions:
                p.add_reaction(key)
                return Operation("reactions.insert", INSERT_REACTION, key)
        return None

    def reaction_delete(self) -> Operation | None:
        p = self.population
        if not p.reactions:
            return None
        key = p.reactions.choice(self.rng)
        p.remove_reaction(key)
        return Operation("reactions.delete", DELETE_REACTION, key)

    # -- follows, blocks, mutes --------------------------------------------------------------------
    def follow_insert(self) -> Operation | None:
        p, rng = self.population, self.rng
        for _ in range(5):
            follower = p.random_user(rng)
            followee = p.popular_user(rng) if rng.random() < 0.7 else p.random_user(rng)
            pair = (follower, followee)
            if follower != followee and pair not in p.follows:
                p.follows.add(pair)
                return Operation("follows.insert", INSERT_FOLLOW, pair)
        return None

    def follow_delete(self) -> Operation | None:
        return self._pair_delete(self.population.follows, "follows.delete", DELETE_FOLLOW)

    def block_insert(self) -> Operation | None:
        return self._pair_insert(self.population.blocks, "blocks.insert", INSERT_BLOCK)

    def block_delete(self) -> Operation | None:
        return self._pair_delete(self.population.blocks, "blocks.delete", DELETE_BLOCK)

    def mute_insert(self) -> Operation | None:
        return self._pair_insert(self.population.mutes, "mutes.insert", INSERT_MUTE)

    def mute_delete(self) -> Operation | None:
        return self._pair_delete(self.population.mutes, "mutes.delete", DELETE_MUTE)

    def _pair_insert(self, bag: Bag[Pair], name: str, query: LiteralString) -> Operation | None:
        pair = (self.population.random_user(self.rng), self.population.random_user(self.rng))
        if pair[0] == pair[1] or pair in bag:
            return None
        bag.add(pair)
        return Operation(name, query, pair)

    def _pair_delete(self, bag: Bag[Pair], name: str, query: LiteralString) -> Operation | None:
        if not bag:
            return None
        pair = bag.choice(self.rng)
        bag.remove(pair)
        return Operation(name, query, pair)


# -- seed ------------------------------------------------------------------------------------------
def follower_count_sample(rng: random.Random, alpha: float, scale: float, cap: int) -> int:
    """A Lomax (Pareto II) draw: most users get a handful of followers, a few get thousands."""
    return min(cap, int(scale * (rng.paretovariate(alpha) - 1.0)))


def _copy(
    conn: psycopg.Connection[Any], statement: LiteralString, rows: Iterable[tuple[Any, ...]], tx_rows: int
) -> int:
    """COPY ``rows`` in transactions of ``tx_rows``; returns the rows written."""
    written = 0
    it = iter(rows)
    while chunk := list(islice(it, tx_rows)):
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            for row in chunk:
                copy.write_row(row)
        conn.commit()  # also when the caller had a transaction open (the block above was a savepoint)
        written += len(chunk)
    return written


def seed(
    conn: psycopg.Connection[Any],
    users: int,
    celebrities: int,
    celebrity_followers: int,
    rng: random.Random,
    *,
    follower_alpha: float = 1.3,
    follower_scale: float = 4.0,
    posts_per_user: float = 3.0,
    tx_rows: int = 50_000,
) -> Population:
    """Write ``users`` users with COPY: the first ``celebrities`` get ``celebrity_followers``
    followers each, every other user a power-law count (Lomax, ``follower_alpha``; median about 2,
    capped below the celebrities'), followers drawn uniformly; then about ``posts_per_user`` posts
    per user (exponential), 85% public. Rows written per table are in ``Population.seeded``."""
    if users < 2:
        raise ValueError("seed needs at least 2 users")
    if not 0 <= celebrities <= users:
        raise ValueError(f"celebrities must be between 0 and users ({users})")
    if celebrities and not 0 <= celebrity_followers <= users - 1:
        raise ValueError(f"a celebrity can have at most users - 1 = {users - 1} followers, not {celebrity_followers}")
    ids = [new_id(rng) for _ in range(users)]
    cap = users - 1 if not celebrities else max(0, min(users - 1, celebrity_followers - 1))
    others = sorted(
        (follower_count_sample(rng, follower_alpha, follower_scale, cap) for _ in range(users - celebrities)),
        reverse=True,
    )
    wanted = [celebrity_followers] * celebrities + others
    population = Population(
        users=ids, celebrities=ids[:celebrities], popularity=list(accumulate(float(k + 1) for k in wanted))
    )

    def user_rows() -> Iterator[tuple[Any, ...]]:
        for uid in ids:
            handle = handle_of(uid)
            yield uid, handle, handle.replace("_", " "), text(rng, 6)

    def follow_rows() -> Iterator[tuple[Any, ...]]:
        everyone = range(users)
        for followee, k in enumerate(wanted):
            if k == 0:
                continue
            chosen = [i for i in rng.sample(everyone, k + 1) if i != followee][:k]
            for follower in chosen:
                pair = (ids[follower], ids[followee])
                population.follows.add(pair)
                yield pair

    def post_rows() -> Iterator[tuple[Any, ...]]:
        for author in ids:
            for _ in range(int(rng.expovariate(1.0 / posts_per_user)) if posts_per_user > 0 else 0):
                pid = new_id(rng)
                visibility = "public" if rng.random() < PUBLIC_SHARE else "private"
                population.add_post(pid, visibility)
                yield pid, author, text(rng, 12), rng.sample(TOPICS, rng.randint(0, 3)), visibility

    population.seeded["users"] = _copy(conn, COPY_USERS, user_rows(), tx_rows)
    population.seeded["follows"] = _copy(conn, COPY_FOLLOWS, follow_rows(), tx_rows)
    population.seeded["posts"] = _copy(conn, COPY_POSTS, post_rows(), tx_rows)
    return population


# -- bulk ------------------------------------------------------------------------------------------
def bulk(
    conn: psycopg.Connection[Any], population: Population, events: int, rng: random.Random, tx_rows: int = 500
) -> Counter[str]:
    """Write about ``events`` change events (cascades included; the last operation may overshoot
    by its cascade) in the :data:`MIX` proportions, ``tx_rows`` rows per transaction, each
    transaction pipelined. Returns the rows changed per operation."""
    mix = OperationMix(population, rng)
    counts: Counter[str] = Counter()
    written = 0
    while written < events:
        ops: list[Operation] = []
        rows = 0
        budget = min(tx_rows, events - written)
        while rows < budget:
            op = mix.next()
            ops.append(op)
            rows += op.rows
        with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
            for op in ops:
                cur.execute(op.query, op.params)
        conn.commit()  # also when the caller had a transaction open (the block above was a savepoint)
        for op in ops:
            op.count(counts)
        written += rows
    return counts


# -- steady ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteadyReport:
    """What a paced run did. ``achieved_rate`` below ``target_rate``: the writer fell behind
    (``max_lag_s``: the furthest it ran behind its schedule)."""

    counts: Counter[str]
    transactions: int
    seconds: float
    achieved_rate: float
    target_rate: float
    max_lag_s: float

    @property
    def fell_behind(self) -> bool:
        return self.achieved_rate < 0.98 * self.target_rate


MIN_SLEEP_S = 0.002  # below this, run the next operations now instead of sleeping (batched sleeps)


def steady(
    conninfo: str,
    population: Population,
    rate_per_s: float,
    duration_s: float,
    rng: random.Random,
    on_post: Callable[[str, float], None] | None = None,
) -> SteadyReport:
    """One operation per transaction (autocommit) at ``rate_per_s`` for ``duration_s``, on a
    monotonic schedule: operation ``i`` is due at ``start + i / rate``; when late it runs at once
    (catching up), and the run never extends past ``duration_s``. ``on_post(post_id, wall_time)``
    is called for each new public post right after its COMMIT returned (``time.time()``)."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be positive")
    mix = OperationMix(population, rng)
    counts: Counter[str] = Counter()
    total = int(rate_per_s * duration_s)
    interval = 1.0 / rate_per_s
    done, max_lag = 0, 0.0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        start = time.monotonic()
        deadline = start + duration_s
        while done < total:
            now = time.monotonic()
            if now >= deadline:
                break
            ahead = start + done * interval - now
            if ahead >= MIN_SLEEP_S:
                time.sleep(ahead)
            elif ahead < 0:
                max_lag = max(max_lag, -ahead)
            op = mix.next()
            conn.execute(op.query, op.params)
            if on_post is not None and op.public_post is not None:
                on_post(str(op.public_post), time.time())
            op.count(counts)
            done += 1
        remaining = start + duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        seconds = time.monotonic() - start
    return SteadyReport(counts, done, seconds, done / seconds, rate_per_s, max_lag)


# -- fan-out ---------------------------------------------------------------------------------------
def celebrity_post(
    conn: psycopg.Connection[Any], celebrity_id: uuid.UUID, rng: random.Random | None = None
) -> tuple[str, float]:
    """One public post by ``celebrity_id``, committed; returns its id and the wall time right after
    COMMIT returned. The post is in no :class:`Population`: the load never edits or deletes it."""
    rng = rng or random.Random()
    pid = new_id(rng)
    conn.execute(INSERT_POST, (pid, celebrity_id, text(rng, 12), ["music"], "public"))
    conn.commit()
    return str(pid), time.time()


# -- the random workload ---------------------------------------------------------------------------
@dataclass
class SocialWorkload:
    conn: psycopg.Connection
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    users: list[uuid.UUID] = field(default_factory=list)
    posts: list[uuid.UUID] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)

    # -- helpers ----------------------------------------------------------------------------------
    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def _user(self) -> uuid.UUID:
        return self.rng.choice(self.users)

    def _popular_user(self) -> uuid.UUID:
        """Pareto-weighted choice: low indexes are the celebrities."""
        index = min(int(self.rng.paretovariate(1.2)) - 1, len(self.users) - 1)
        return self.users[index]

    def _exec(self, name: str, query: str, params: tuple[object, ...]) -> int:
        cur = self.conn.execute(query.encode(), params)
        self.done[name] += cur.rowcount if cur.rowcount > 0 else 0
        return cur.rowcount

    def _delete_any(self, table: str) -> None:
        """Delete one row of ``table``, chosen by the database (none when the table is empty)."""
        one = f"SELECT ctid FROM {table} ORDER BY random() LIMIT 1"
        self._exec(f"{table}.delete", f"DELETE FROM {table} WHERE ctid = ({one})", ())

    # -- operations -------------------------------------------------------------------------------
    def create_user(self) -> uuid.UUID:
        uid = new_id(self.rng)
        handle = f"user_{uid.hex[:10]}"
        self._exec("users.insert", INSERT_USER, (uid, handle, handle.replace("_", " ").title(), self._text(6)))
        self.users.append(uid)
        return uid

    def update_user(self) -> None:
        self._exec("users.update", UPDATE_USER, (self._text(8), self._user()))

    def delete_user(self) -> None:
        if len(self.users) < 10:
            return
        uid = self.users.pop(self.rng.randrange(5, len(self.users)))
        self._exec("users.delete", DELETE_USER, (uid,))
        self._forget_deleted_posts()

    def _forget_deleted_posts(self) -> None:
        rows = self.conn.execute("SELECT id FROM posts").fetchall()
        alive = {r[0] for r in rows}
        self.posts = [p for p in self.posts if p in alive]

    def create_post(self) -> uuid.UUID:
        pid = new_id(self.rng)
        topics = self.rng.sample(TOPICS, self.rng.randint(0, 3))
        visibility = "public" if self.rng.random() < PUBLIC_SHARE else "private"
        author = self._popular_user() if self.rng.random() < 0.5 else self._user()
        self._exec("posts.insert", INSERT_POST, (pid, author, self._text(12), topics, visibility))
        self.posts.append(pid)
        return pid

    def update_post(self) -> None:
        if not self.posts:
            return
        pid = self.rng.choice(self.posts)
        if self.rng.random() < 0.5:
            self._exec("posts.update", UPDATE_POST_BODY, (self._text(10), pid))
        else:
            self._exec("posts.update", TOGGLE_POST_VISIBILITY, (pid,))

    def delete_post(self) -> None:
        if len(self.posts) < 5:
            return
        pid = self.posts.pop(self.rng.randrange(len(self.posts)))
        self._exec("posts.delete", DELETE_POST, (pid,))

    def reply(self) -> None:
        if not self.posts:
            return
        rid = new_id(self.rng)
        self._exec("replies.insert", INSERT_REPLY, (rid, self.rng.choice(self.posts), self._user(), self._text(5)))

    def delete_reply(self) -> None:
        self._exec(
            "replies.delete", "DELETE FROM replies WHERE id = (SELECT id FROM replies ORDER BY random() LIMIT 1)", ()
        )

    def react(self) -> None:
        if not self.posts:
            return
        key = (self.rng.choice(self.posts), self._user(), self.rng.choice(REACTION_KINDS))
        self._exec("reactions.insert", INSERT_REACTION + IF_NEW, key)

    def unreact(self) -> None:
        self._delete_any("reactions")

    def follow(self) -> None:
        follower, followee = self._user(), self._popular_user()
        if follower != followee:
            self._exec("follows.insert", INSERT_FOLLOW + IF_NEW, (follower, followee))

    def unfollow(self) -> None:
        self._delete_any("follows")

    def _pair(self, name: str, query: LiteralString) -> None:
        x, y = self._user(), self._user()
        if x != y:
            self._exec(name, query + IF_NEW, (x, y))

    def block(self) -> None:
        self._pair("blocks.insert", INSERT_BLOCK)

    def unblock(self) -> None:
        self._delete_any("blocks")

    def mute(self) -> None:
        self._pair("mutes.insert", INSERT_MUTE)

    def unmute(self) -> None:
        self._delete_any("mutes")

    def mark_read(self) -> None:
        """A user reads their notifications: up to now, or (sometimes) up to a moment ago."""
        ago = None if self.rng.random() < 0.7 else datetime.now(UTC) - timedelta(seconds=self.rng.randint(1, 5))
        self._exec("notification_reads.upsert", MARK_READ, (self._user(), ago))  # the app's own write

    # -- mixes ------------------------------------------------------------------------------------
    def seed(self, users: int, posts: int, follows: int) -> None:
        for _ in range(users):
            self.create_user()
        for _ in range(follows):
            self.follow()
        for _ in range(posts):
            self.create_post()
        self.conn.commit()

    def mix(self) -> list[tuple[Callable[[], object], float]]:
        """Each operation with its weight: :data:`MIX`, then :data:`SOCIAL_EXTRA`."""
        operations: dict[str, Callable[[], object]] = {
            "posts.insert": self.create_post,
            "posts.update": self.update_post,
            "posts.delete": self.delete_post,
            "replies.insert": self.reply,
            "replies.delete": self.delete_reply,
            "reactions.insert": self.react,
            "reactions.delete": self.unreact,
            "follows.insert": self.follow,
            "follows.delete": self.unfollow,
            "blocks.insert": self.block,
            "blocks.delete": self.unblock,
            "mutes.insert": self.mute,
            "mutes.delete": self.unmute,
            "users.insert": self.create_user,
            "users.update": self.update_user,
            "users.delete": self.delete_user,
            "notification_reads.upsert": self.mark_read,
        }
        return [(operations[name], weight) for name, weight in {**MIX, **SOCIAL_EXTRA}.items()]

    def run(self, operations: int, commit_every: int = 20) -> Counter[str]:
        """Apply ``operations`` random operations, committing every ``commit_every``."""
        if not self.users:
            self.seed(users=20, posts=20, follows=40)
        ops, weights = zip(*self.mix(), strict=True)
        for i in range(operations):
            self.rng.choices(ops, weights)[0]()
            if (i + 1) % commit_every == 0:
                self.conn.commit()
        self.conn.commit()
        return self.done
