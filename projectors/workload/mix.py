"""The one generator of operations: drawn in a mix's proportions, each recorded in the population
at once. Two ways run them: the planned load (``load.py``) and the sample workload (``social.py``)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, LiteralString

from projectors.projections.notifications import MARK_READ
from projectors.workload.population import Bag, Population, new_id, text, user_row
from projectors.workload.statements import (
    DELETE_BLOCK,
    DELETE_FOLLOW,
    DELETE_MUTE,
    DELETE_POST,
    DELETE_REACTION,
    DELETE_REPLY,
    DELETE_USER,
    IF_NEW,
    INSERT_BLOCK,
    INSERT_FOLLOW,
    INSERT_MUTE,
    INSERT_POST,
    INSERT_REACTION,
    INSERT_REPLY,
    INSERT_USER,
    MIX,
    REACTION_KINDS,
    TOGGLE_POST_VISIBILITY,
    UPDATE_POST_BODY,
    UPDATE_USER,
    Pair,
)


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

    @property
    def tolerant_query(self) -> LiteralString:
        """The statement for a database the population may not know entirely: an insert of a row
        that exists leaves it as is (a delete of a missing row already changes nothing)."""
        return self.query + IF_NEW if self.name.endswith(".insert") else self.query

    def count(self, counts: Counter[str]) -> None:
        counts[self.name] += 1
        for name, n in self.cascade:
            if n:
                counts[name] += n


class OperationMix:
    """Draws valid operations in the ``weights`` proportions (default :data:`MIX`) and records each
    in the population at once (the caller must then execute it, in the order drawn). Posts are not
    deleted below ``min_posts``."""

    def __init__(
        self,
        population: Population,
        rng: random.Random,
        weights: dict[str, float] | None = None,
        min_posts: int = 20,
    ) -> None:
        self.population, self.rng, self.min_posts = population, rng, min_posts
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
            "users.delete": self.user_delete,
            "notification_reads.upsert": self.mark_read,
        }
        unknown = set(mix) - set(self._planners)
        if unknown:
            raise ValueError(f"unknown operations in the mix: {', '.join(sorted(unknown))}")
        self._kinds = [self._planners[name] for name in mix]
        self._cum_weights = list(accumulate(mix.values()))

    def plan(self, name: str) -> Operation | None:
        """The named operation (``posts.delete``...), or None when it is impossible right now."""
        return self._planners[name]()

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
        return Operation("users.insert", INSERT_USER, user_row(uid, self.rng))

    def user_update(self) -> Operation:
        return Operation("users.update", UPDATE_USER, (text(self.rng, 8), self.population.random_user(self.rng)))

    def user_delete(self) -> Operation | None:
        """A user who is neither among the first five (the most popular without seeded followers)
        nor weighted by seeded followers; cascades to every row of theirs."""
        p = self.population
        first = max(5, len(p.popularity))
        if len(p.users) < max(10, first + 1):
            return None
        uid = p.users[self.rng.randrange(first, len(p.users))]
        cascade = tuple((f"{table}.cascade_delete", n) for table, n in sorted(p.remove_user(uid).items()))
        return Operation("users.delete", DELETE_USER, (uid,), cascade=cascade)

    def mark_read(self) -> Operation:
        """A user reads their notifications: up to now, or (sometimes) up to a moment ago."""
        rng, uid = self.rng, self.population.random_user(self.rng)
        ago = None if rng.random() < 0.7 else datetime.now(UTC) - timedelta(seconds=rng.randint(1, 5))
        self.population.readers.add(uid)
        return Operation("notification_reads.upsert", MARK_READ, (uid, ago))  # the app's own write

    # -- posts -------------------------------------------------------------------------------------
    def post_insert(self) -> Operation:
        p, rng = self.population, self.rng
        row = p.new_post(p.popular_user(rng) if rng.random() < 0.5 else p.random_user(rng), rng)
        return Operation("posts.insert", INSERT_POST, row, public_post=row[0] if row[-1] == "public" else None)

    def post_update(self) -> Operation | None:
        p, rng = self.population, self.rng
        pid = p.random_post(rng)
        if pid is None:
            return None
        if rng.random() < 0.5:
            return Operation("posts.update", UPDATE_POST_BODY, (text(rng, 10), pid))
        return Operation("posts.update", TOGGLE_POST_VISIBILITY, (pid,))

    def post_delete(self) -> Operation | None:
        p = self.population
        if len(p.posts) <= self.min_posts:
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
        rid, author = new_id(rng), p.random_user(rng)
        p.add_reply(rid, pid, author)
        return Operation("replies.insert", INSERT_REPLY, (rid, pid, author, text(rng, 5)))

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
