"""The planned load of the benchmarks: a seeded population by COPY, bulk mixes, a paced steady
load, one celebrity post."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any, LiteralString

import psycopg

from projectors.workload.mix import Operation, OperationMix
from projectors.workload.population import Population, new_id, text, user_row
from projectors.workload.statements import COPY_FOLLOWS, COPY_POSTS, COPY_USERS, INSERT_POST


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
        return (user_row(uid, rng) for uid in ids)

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
                yield population.new_post(author, rng)

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
