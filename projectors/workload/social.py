"""The sample workload of `projectors sample`, the demo and the tests: the operations of
:class:`OperationMix` run on one connection, committed every few, tolerant of rows it does not know."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, LiteralString

import psycopg

from projectors.workload.mix import Operation, OperationMix
from projectors.workload.population import Population
from projectors.workload.statements import SAMPLE_MIX


def _applying(name: str) -> Callable[[SocialWorkload], None]:
    """A method that applies the operation ``name`` once (:meth:`SocialWorkload.apply`)."""

    def method(self: SocialWorkload) -> None:
        self.apply(name)

    method.__doc__ = f"Apply one {name} (nothing when there is nothing to do); not committed."
    return method


class SocialWorkload:
    """Random operations in the :data:`SAMPLE_MIX` proportions (the planned mix, plus user deletes
    and notification reads) on ``conn``, the caller's transaction: :meth:`seed` and :meth:`run`
    commit. ``done`` counts the rows each operation changed, as PostgreSQL reports them (cascades
    not included): an insert of a row that exists or a delete of a row already gone changes nothing.

    ``users`` and ``posts`` may be set to rows written before (read from the database): the next
    :meth:`run` or :meth:`apply` first reads what else exists among them (authors, replies, reactions, follows,
    blocks, mutes, read state), so it edits and deletes those rows too."""

    def __init__(self, conn: psycopg.Connection[Any], rng: random.Random | None = None) -> None:
        self.conn = conn
        self.rng = rng or random.Random(7)
        self.population = Population()
        self.mix = OperationMix(self.population, self.rng, SAMPLE_MIX, min_posts=5)
        self.done: Counter[str] = Counter()
        self._given = False  # users or posts were set from outside: read the rest before running

    @property
    def users(self) -> list[uuid.UUID]:
        """The users, oldest first: the first are the popular ones (a Pareto draw of the position)."""
        return self.population.users

    @users.setter
    def users(self, ids: Iterable[uuid.UUID]) -> None:
        self.population.users = list(ids)
        self._given = True

    @property
    def posts(self) -> list[uuid.UUID]:
        return self.population.posts

    @posts.setter
    def posts(self, ids: Iterable[uuid.UUID]) -> None:
        self.population.set_posts(ids)
        self._given = True

    # -- single operations ----------------------------------------------------------------------------
    def apply(self, name: str) -> Operation | None:
        """Plan and execute the named operation (``follows.insert``...); None when there is
        nothing to do (no post to delete...). Not committed."""
        if self._given:
            self._read_the_rest()
        op = self.mix.plan(name)
        if op is not None:
            self._execute(op)
        return op

    def create_user(self) -> uuid.UUID:
        op = self.apply("users.insert")
        assert op is not None and isinstance(op.params[0], uuid.UUID)
        return op.params[0]

    # one operation each, by the names the tests use (nothing when there is nothing to do)
    follow = _applying("follows.insert")
    unfollow = _applying("follows.delete")
    block = _applying("blocks.insert")
    mute = _applying("mutes.insert")
    unreact = _applying("reactions.delete")
    delete_reply = _applying("replies.delete")
    delete_post = _applying("posts.delete")
    delete_user = _applying("users.delete")

    # -- runs -----------------------------------------------------------------------------------------
    def seed(self, users: int, posts: int, follows: int) -> None:
        """``users`` users, then ``follows`` follows (mostly of the first users), then ``posts``
        posts; committed."""
        for name, times in (("users.insert", users), ("follows.insert", follows), ("posts.insert", posts)):
            for _ in range(times):
                self.apply(name)
        self.conn.commit()

    def run(self, operations: int, commit_every: int = 20) -> Counter[str]:
        """Apply ``operations`` random operations, committing every ``commit_every``; seeds 20
        users, 40 follows and 20 posts first when there are no users. Returns ``done``."""
        if not self.users:
            self.seed(users=20, posts=20, follows=40)
        if self._given:
            self._read_the_rest()
        for i in range(operations):
            self._execute(self.mix.next())
            if (i + 1) % commit_every == 0:
                self.conn.commit()
        self.conn.commit()
        return self.done

    def _execute(self, op: Operation) -> None:
        cur = self.conn.execute(op.tolerant_query, op.params)
        self.done[op.name] += max(cur.rowcount, 0)

    def _read_the_rest(self) -> None:
        """Record the rows among the given users and posts that the population does not know."""
        p, users, posts = self.population, list(self.population.users), self.population.posts
        self._given = False
        for pid, author in self._rows("SELECT id, author_id FROM posts WHERE id = ANY(%s)", posts):
            p.add_post(pid, author)
        for rid, pid, author in self._rows("SELECT id, post_id, author_id FROM replies WHERE post_id = ANY(%s)", posts):
            if rid not in p.replies:
                p.add_reply(rid, pid, author)
        for key in self._rows("SELECT post_id, user_id, kind FROM reactions WHERE post_id = ANY(%s)", posts):
            p.add_reaction((key[0], key[1], key[2]))
        for bag, query in (
            (p.follows, "SELECT follower_id, followee_id FROM follows WHERE follower_id = ANY(%s)"),
            (p.blocks, "SELECT blocker_id, blocked_id FROM blocks WHERE blocker_id = ANY(%s)"),
            (p.mutes, "SELECT muter_id, muted_id FROM mutes WHERE muter_id = ANY(%s)"),
        ):
            for a, b in self._rows(query, users):
                bag.add((a, b))
        readers = self._rows("SELECT user_id FROM notification_reads WHERE user_id = ANY(%s)", users)
        p.readers.update(uid for (uid,) in readers)

    def _rows(self, query: LiteralString, ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, (ids,)).fetchall()
