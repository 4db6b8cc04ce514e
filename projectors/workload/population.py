"""What a workload knows it wrote: every row, so each statement it plans changes exactly the rows
it was planned to."""

from __future__ import annotations

import bisect
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic

from projectors.workload.statements import PARETO_ALPHA, PUBLIC_SHARE, TOPICS, WORDS, Pair, ReactionKey, T


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


def user_row(user_id: uuid.UUID, rng: random.Random) -> tuple[Any, ...]:
    """A new user's row: id, handle, display name, bio."""
    handle = handle_of(user_id)
    return user_id, handle, handle.replace("_", " "), text(rng, 6)


@dataclass(eq=False)
class Population:
    """What the load wrote and what still exists: the source of truth for choosing valid operations."""

    users: list[uuid.UUID] = field(default_factory=list)  # most followed first (celebrities, then by
    # seeded follower count); a population grown by its own operations: oldest first
    celebrities: list[uuid.UUID] = field(default_factory=list)
    seeded: Counter[str] = field(default_factory=Counter)  # rows written by seed(), per table
    popularity: list[float] = field(default_factory=list)  # cumulative weights over users[: len(popularity)]
    follows: Bag[Pair] = field(default_factory=Bag, repr=False)  # (follower, followee)
    reactions: Bag[ReactionKey] = field(default_factory=Bag, repr=False)
    replies: Bag[uuid.UUID] = field(default_factory=Bag, repr=False)
    blocks: Bag[Pair] = field(default_factory=Bag, repr=False)
    mutes: Bag[Pair] = field(default_factory=Bag, repr=False)
    authors: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict, repr=False)  # post or reply -> author
    readers: set[uuid.UUID] = field(default_factory=set, repr=False)  # users with a notification_reads row
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
        attachment: follows go mostly to the already popular); without seeded followers, a Pareto
        draw of the position in ``users``: the first users get most follows and posts."""
        if not self.popularity:
            return self.users[min(int(rng.paretovariate(PARETO_ALPHA)) - 1, len(self.users) - 1)]
        return self.users[bisect.bisect(self.popularity, rng.random() * self.popularity[-1])]

    def random_post(self, rng: random.Random) -> uuid.UUID | None:
        return self._posts.choice(rng) if self._posts else None

    def follower_counts(self) -> Counter[uuid.UUID]:
        """Followers per user now (users without followers are absent)."""
        return Counter(followee for _follower, followee in self.follows)

    # -- recording ---------------------------------------------------------------------------------
    def set_posts(self, post_ids: Iterable[uuid.UUID]) -> None:
        """The posts that exist, as read elsewhere (their authors may be unknown: :meth:`unknown_authors`)."""
        self._posts = Bag(post_ids)

    def unknown_authors(self) -> list[uuid.UUID]:
        """Posts whose author this population does not know."""
        return [pid for pid in self._posts if pid not in self.authors]

    def new_post(self, author: uuid.UUID, rng: random.Random) -> tuple[Any, ...]:
        """A new post by ``author``, recorded; returns its row: id, author, body, topics, visibility."""
        pid = new_id(rng)
        visibility = "public" if rng.random() < PUBLIC_SHARE else "private"
        self.add_post(pid, author)
        return pid, author, text(rng, 12), rng.sample(TOPICS, rng.randint(0, 3)), visibility

    def add_post(self, post_id: uuid.UUID, author: uuid.UUID) -> None:
        self._posts.add(post_id)
        self.authors[post_id] = author

    def remove_post(self, post_id: uuid.UUID) -> tuple[int, int]:
        """Forget a deleted post with its replies and reactions; returns how many replies and
        reactions the delete cascaded to."""
        self._posts.remove(post_id)
        self.authors.pop(post_id, None)
        replies = self.post_replies.pop(post_id, set())
        for reply_id in replies:
            self.replies.remove(reply_id)
            del self.reply_post[reply_id]
            self.authors.pop(reply_id, None)
        reactions = self.post_reactions.pop(post_id, set())
        for key in reactions:
            self.reactions.remove(key)
        return len(replies), len(reactions)

    def add_reply(self, reply_id: uuid.UUID, post_id: uuid.UUID, author: uuid.UUID) -> None:
        self.replies.add(reply_id)
        self.reply_post[reply_id] = post_id
        self.authors[reply_id] = author
        self.post_replies.setdefault(post_id, set()).add(reply_id)

    def remove_reply(self, reply_id: uuid.UUID) -> None:
        self.replies.remove(reply_id)
        self.authors.pop(reply_id, None)
        self.post_replies[self.reply_post.pop(reply_id)].discard(reply_id)

    def add_reaction(self, key: ReactionKey) -> None:
        self.reactions.add(key)
        self.post_reactions.setdefault(key[0], set()).add(key)

    def remove_reaction(self, key: ReactionKey) -> None:
        self.reactions.remove(key)
        self.post_reactions[key[0]].discard(key)

    def remove_user(self, user_id: uuid.UUID) -> Counter[str]:
        """Forget a deleted user and every row the delete cascaded to (their posts with those
        posts' replies and reactions, their replies, reactions, follows, blocks, mutes and read
        state); returns those rows per table. Walks every row: for small populations."""
        self.users.remove(user_id)
        gone: Counter[str] = Counter()
        for pid in [p for p in self._posts if self.authors.get(p) == user_id]:
            replies, reactions = self.remove_post(pid)
            gone.update(posts=1, replies=replies, reactions=reactions)
        for rid in [r for r in self.replies if self.authors.get(r) == user_id]:
            self.remove_reply(rid)
            gone["replies"] += 1
        for key in [k for k in self.reactions if k[1] == user_id]:
            self.remove_reaction(key)
            gone["reactions"] += 1
        for table, bag in (("follows", self.follows), ("blocks", self.blocks), ("mutes", self.mutes)):
            for pair in [p for p in bag if user_id in p]:
                bag.remove(pair)
                gone[table] += 1
        if user_id in self.readers:
            self.readers.discard(user_id)
            gone["notification_reads"] += 1
        return gone
