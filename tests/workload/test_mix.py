"""The one operation generator, as pure logic: what it records in the population (no database)."""

from __future__ import annotations

import random
import uuid
from collections import Counter

from projectors.workload import MIX, SAMPLE_MIX, OperationMix, Population


def grown(weights: dict[str, float], operations: int, seed: int) -> tuple[Population, list[uuid.UUID]]:
    """A population grown from 40 users by ``operations`` drawn operations; the users deleted."""
    population = Population()
    mix = OperationMix(population, random.Random(seed), weights, min_posts=5)
    for name, times in (("users.insert", 40), ("follows.insert", 120), ("posts.insert", 60)):
        for _ in range(times):
            assert mix.plan(name) is not None
    deleted = [op.params[0] for op in (mix.next() for _ in range(operations)) if op.name == "users.delete"]
    return population, deleted


def test_a_user_delete_forgets_every_row_of_the_user() -> None:
    population, deleted = grown(SAMPLE_MIX, 3_000, seed=3)
    assert len(deleted) >= 3 and population.readers
    gone = set(deleted)
    assert not gone & set(population.users)
    assert not gone & {population.authors[p] for p in population.posts}
    assert not gone & {population.authors[r] for r in population.replies}
    assert not gone & {user for _post, user, _kind in population.reactions}
    for bag in (population.follows, population.blocks, population.mutes):
        assert not gone & {u for pair in bag for u in pair}
    assert not gone & population.readers
    assert set(population.authors) == set(population.posts) | set(population.replies)


def test_the_cascade_of_a_user_delete_counts_the_rows_it_removes() -> None:
    population = Population()
    mix = OperationMix(population, random.Random(11), SAMPLE_MIX, min_posts=5)
    for name, times in (("users.insert", 14), ("follows.insert", 40), ("posts.insert", 30), ("replies.insert", 30),
                        ("reactions.insert", 40), ("notification_reads.upsert", 20)):  # fmt: skip
        for _ in range(times):
            mix.plan(name)

    def rows() -> int:
        p = population
        return (len(p.users) + len(p.posts) + len(p.replies) + len(p.reactions) + len(p.follows)
                + len(p.blocks) + len(p.mutes) + len(p.readers))  # fmt: skip

    first = population.users[:5]
    cascaded = 0
    for _ in range(5):
        before = rows()
        op = mix.plan("users.delete")
        assert op is not None
        assert before - rows() == op.rows
        cascaded += op.rows - 1
    assert cascaded > 0
    assert len(population.users) == 9 and population.users[:5] == first  # the first five are never deleted
    assert mix.plan("users.delete") is None  # below ten users


def test_popular_users_come_first_without_seeded_followers() -> None:
    population = Population(users=[uuid.UUID(int=i) for i in range(100)])
    rng = random.Random(5)
    drawn = Counter(population.popular_user(rng) for _ in range(10_000))
    first, last = population.users[0], population.users[-1]
    assert drawn[first] > 5_000 and drawn[first] == max(drawn.values())
    assert drawn[last] < drawn[population.users[1]] / 10


def test_the_planned_mix_deletes_no_user_and_writes_no_read_state() -> None:
    population, deleted = grown(MIX, 3_000, seed=4)
    assert deleted == [] and not population.readers and len(population.users) >= 40


def test_only_inserts_tolerate_a_row_that_exists() -> None:
    population = Population()
    mix = OperationMix(population, random.Random(1), SAMPLE_MIX)
    user = mix.plan("users.insert")
    mix.plan("users.insert")
    follow, update, read = mix.plan("follows.insert"), mix.plan("users.update"), mix.plan("notification_reads.upsert")
    assert user is not None and follow is not None and update is not None and read is not None
    assert user.tolerant_query.endswith("ON CONFLICT DO NOTHING")
    assert follow.tolerant_query.endswith("ON CONFLICT DO NOTHING")
    assert update.tolerant_query == update.query and read.tolerant_query == read.query
