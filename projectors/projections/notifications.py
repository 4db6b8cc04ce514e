"""Cosmos ``notifications`` (partition key ``/recipientId``): what is new for a user, and what they read.

Items, with ids derived from source keys only:

- ``<recipientId>:follow:<followerId>`` (kind ``follow``): one per follow of the recipient;
- ``<recipientId>:reactions:<postId>`` (kind ``reactions``): one per post of the recipient that has
  reactions, grouped: ``count`` is the exact number of users who reacted, ``actorIds`` the latest
  three of them (newest first: by each user's latest reaction, then user id), ``latestAt`` the time
  of the latest reaction;
- ``<recipientId>:replies:<postId>`` (kind ``replies``): the same for replies;
- ``<recipientId>:unreadNotifications`` (kind ``unreadNotifications``): the recipient's unread
  count (below).

An actor counts when they are not the recipient (never a notification of your own action) and
neither user blocked the other and the recipient has not muted the actor (:func:`pair_unhidden`,
the feed's rule without the follow). The rows going away (unfollow, unreact, a reply or post
deleted, a block or mute added) update or remove the item.

Read state comes from PostgreSQL: ``notification_reads.read_up_to``, written by the app
(:data:`MARK_READ`); an item is ``read`` when its ``latestAt`` is at or before it (new activity on a
grouped item makes it unread again).

Expiry: an item exists while its latest activity is less than 30 days old (:data:`WINDOW`) at the
spec's time (``now()`` of the read's snapshot, or ``at`` for a given time); ``expiresAt`` is
``latestAt`` + 30 days, and the Cosmos store gives every item with an ``expiresAt`` the matching
``ttl``, so Cosmos deletes it when it expires without any event.

The unread counter lives in the same container and partition as the items: it is computed from the
same rows in the same snapshot and written in the same batch as the items it counts (the counters
projection would have to repeat this projection's whole rule to stay exact), and a read service
gets it with a point read in the partition it already reads. It exists while at least one item is
unread and holds ``unreadExpiresAt``, the expiry of each unread item (oldest first), so the count
stays exact as items expire with no event: ``unread_count`` is the number of them still in the
future (``count`` is that number when it was written). Its ``expiresAt`` is the last of them.

``verify`` judges the store at one time: items expiring within :data:`VERIFY_MARGIN` of it (either
side) are not judged, since the spec's snapshot and the store's read are not at the same instant
(:meth:`NotificationsProjection.judged`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, LiteralString

import psycopg

from projectors.events.models import (
    BlockRow,
    ChangeEvent,
    FollowRow,
    MuteRow,
    NotificationReadRow,
    PostRow,
    ReactionRow,
    ReplyRow,
)
from projectors.model import Document, HeldItems, ItemKey
from projectors.projections.base import Projection, Touch, is_uuid, iso
from projectors.projections.descriptor import Descriptor
from projectors.projections.documents import DOCUMENTS, STORED
from projectors.projections.feed import pair_unhidden
from projectors.source import PostgresSource, array_literal

COLLECTION = "notifications"
CONTAINERS = {COLLECTION: "/recipientId"}
WINDOW = timedelta(days=30)
VERIFY_MARGIN = timedelta(minutes=10)
FOLLOW, REACTIONS, REPLIES = "follow", "reactions", "replies"
UNREAD = "unreadNotifications"
GROUPED = {REACTIONS: ("reactions", "user_id"), REPLIES: ("replies", "author_id")}
LATEST_ACTORS = 3

# What the app runs when a user reads their notifications up to a time (the newest ``latestAt``
# they saw, or now()): the read state only moves forward.
MARK_READ: LiteralString = (
    "INSERT INTO notification_reads (user_id, read_up_to) VALUES (%s, coalesce(%s::timestamptz, now())) "
    "ON CONFLICT (user_id) DO UPDATE SET read_up_to = greatest(notification_reads.read_up_to, excluded.read_up_to), "
    "updated_at = now()"
)


def mark_read(conn: psycopg.Connection[Any], user_id: str, up_to: datetime | None = None) -> None:
    """The app's write when ``user_id`` has read their notifications up to ``up_to`` (default: now).
    Committed by the caller; the projection follows through capture like any other change."""
    conn.execute(MARK_READ, (user_id, up_to))


FOLLOW_PART = f"""SELECT f.followee_id, '{FOLLOW}', f.follower_id, 1::bigint, f.created_at, ARRAY[f.follower_id::text]
FROM follows f WHERE ({{where}}) AND {pair_unhidden('f.followee_id', 'f.follower_id')}"""


def group_part(kind: str) -> str:
    table, actor = GROUPED[kind]
    return f"""SELECT a.r, '{kind}', a.p, count(*), max(a.t),
    (array_agg(a.u::text ORDER BY a.t DESC, a.u DESC))[1:{LATEST_ACTORS}]
FROM (SELECT po.author_id AS r, po.id AS p, x.{actor} AS u, max(x.created_at) AS t
      FROM posts po JOIN {table} x ON x.post_id = po.id
      WHERE ({{where}}) AND x.{actor} <> po.author_id AND {pair_unhidden('po.author_id', f'x.{actor}')}
      GROUP BY po.author_id, po.id, x.{actor}) a
GROUP BY a.r, a.p"""


PARTS = {FOLLOW: FOLLOW_PART, REACTIONS: group_part(REACTIONS), REPLIES: group_part(REPLIES)}
# the columns of every item row: recipient, kind, subject (follower or post), count, latest, actors, read
ITEMS = """WITH clock(at) AS (SELECT coalesce(%s::timestamptz, now()))
SELECT i.r::text, i.kind, i.subject::text, i.n, i.latest, i.actors, coalesce(nr.read_up_to >= i.latest, false)
FROM ({parts}) AS i(r, kind, subject, n, latest, actors)
LEFT JOIN notification_reads nr ON nr.user_id = i.r
WHERE i.latest > (SELECT at FROM clock) - interval '30 days'"""
UNREAD_TIMES = (
    "SELECT u.r, array_agg(u.latest ORDER BY u.latest) FROM ({items}) AS u(r, kind, s, n, latest, a, read) "
    "WHERE NOT u.read GROUP BY u.r"
)

# what a change can touch: the posts of a recipient that an actor reacted to or replied to
ACTED_ON = """SELECT DISTINCT po.author_id::text, x.u::text, po.id::text
FROM unnest(%s::uuid[], %s::uuid[]) AS k(r, a)
JOIN posts po ON po.author_id = k.r
JOIN (SELECT post_id, user_id FROM reactions UNION ALL SELECT post_id, author_id FROM replies) AS x(p, u)
  ON x.p = po.id AND x.u = k.a"""
AUTHORS = "SELECT id::text, author_id::text FROM posts WHERE id = ANY(%s::uuid[])"


def item_key(recipient: str, kind: str, subject: str) -> ItemKey:
    return ItemKey(COLLECTION, f"{recipient}:{kind}:{subject}", recipient)


def unread_key(recipient: str) -> ItemKey:
    return ItemKey(COLLECTION, f"{recipient}:{UNREAD}", recipient)


def item_doc(row: tuple[Any, ...]) -> tuple[ItemKey, Document]:
    recipient, kind, subject, count, latest, actors, read = row
    key = item_key(recipient, kind, subject)
    return key, {
        "id": key.id,
        "recipientId": recipient,
        "kind": kind,
        "postId": None if kind == FOLLOW else subject,
        "actorIds": list(actors),
        "count": int(count),
        "latestAt": iso(latest),
        "expiresAt": iso(latest + WINDOW),
        "read": bool(read),
    }


def unread_doc(recipient: str, latest: list[datetime]) -> tuple[ItemKey, Document]:
    key = unread_key(recipient)
    expiries = [iso(t + WINDOW) for t in sorted(latest)]
    return key, {
        "id": key.id,
        "recipientId": recipient,
        "kind": UNREAD,
        "count": len(expiries),
        "expiresAt": expiries[-1],
        "unreadExpiresAt": expiries,
    }


def unread_at(doc: Mapping[str, Any], at: datetime) -> int:
    """The unread count a counter document gives at ``at``: its unread items not yet expired."""
    now = iso(at)
    return sum(1 for expiry in doc.get("unreadExpiresAt", ()) if expiry > now)


@dataclass(frozen=True, slots=True)
class PostTouch:
    """The grouped items of a post (``author_id`` None: looked up, the event does not say it)."""

    post_id: str
    author_id: str | None


@dataclass(frozen=True, slots=True)
class PairTouch:
    """Every item of ``recipient`` that ``actor`` counts in (a block or mute changes whether they do)."""

    recipient_id: str
    actor_id: str


@dataclass(frozen=True, slots=True)
class ReaderTouch:
    """The read state of ``user_id`` changed: the ``read`` of each of their items, and their counter."""

    user_id: str


class NotificationsProjection(Projection):
    name = "notifications"
    tables = ("posts", "follows", "reactions", "replies", "blocks", "mutes", "notification_reads")
    collections = (COLLECTION,)

    def __init__(self, at: datetime | None = None, margin: timedelta = VERIFY_MARGIN) -> None:
        """``at``: the time the spec is computed at (None: ``now()`` of each read's snapshot)."""
        self.at = at
        self.margin = margin

    def touched(self, event: ChangeEvent) -> list[Touch]:
        out: list[Touch] = []
        for row in event.rows():
            if isinstance(row, FollowRow):
                out += [item_key(row.followee_id, FOLLOW, row.follower_id), unread_key(row.followee_id)]
            elif isinstance(row, ReactionRow | ReplyRow):
                out.append(PostTouch(row.post_id, None))
            elif isinstance(row, PostRow):
                out.append(PostTouch(row.id, row.author_id))
            elif isinstance(row, BlockRow):
                out += [PairTouch(row.blocker_id, row.blocked_id), PairTouch(row.blocked_id, row.blocker_id)]
            elif isinstance(row, MuteRow):
                out.append(PairTouch(row.muter_id, row.muted_id))
            elif isinstance(row, NotificationReadRow):
                out.append(ReaderTouch(row.user_id))
        return out

    def expand(self, touches: Collection[Touch], source: PostgresSource, held: HeldItems) -> set[ItemKey]:
        keys = {t for t in touches if isinstance(t, ItemKey)}
        posts: dict[str, str | None] = {}
        for t in touches:
            if isinstance(t, PostTouch):
                posts[t.post_id] = t.author_id or posts.get(t.post_id)
        unknown = sorted(p for p, a in posts.items() if a is None)
        if unknown:
            # a post gone already: its delete event (which names the author) removes its items
            posts.update(dict(source.rows(AUTHORS, [unknown])))
        for post, author in posts.items():
            if author is not None:
                keys |= {item_key(author, REACTIONS, post), item_key(author, REPLIES, post), unread_key(author)}
        pairs = sorted({(t.recipient_id, t.actor_id) for t in touches if isinstance(t, PairTouch)})
        for recipient, actor in pairs:
            keys |= {item_key(recipient, FOLLOW, actor), unread_key(recipient)}
        if pairs:
            for recipient, _actor, post in source.rows(ACTED_ON, [[r for r, _ in pairs], [a for _, a in pairs]]):
                keys |= {item_key(recipient, REACTIONS, post), item_key(recipient, REPLIES, post)}
        readers = sorted({t.user_id for t in touches if isinstance(t, ReaderTouch)})
        if readers:
            # the items that exist now (an expired or removed one has no read state to change)
            keys |= set(self.items_of(readers, source)) | {unread_key(u) for u in readers}
        return keys

    # -- the spec -----------------------------------------------------------------------------------
    def _query(self, parts: Mapping[str, tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
        """The item rows of ``parts`` (kind -> condition and its parameters)."""
        params: list[Any] = [self.at]
        sql = []
        for kind, (where, values) in parts.items():
            sql.append(PARTS[kind].format(where=where))
            params += [array_literal(v) if isinstance(v, list) else v for v in values]
        return ITEMS.format(parts="\nUNION ALL\n".join(sql)), params

    def _for_recipients(self, recipients: list[str]) -> dict[str, tuple[str, list[Any]]]:
        return {
            FOLLOW: ("f.followee_id = ANY(%s::uuid[])", [recipients]),
            REACTIONS: ("po.author_id = ANY(%s::uuid[])", [recipients]),
            REPLIES: ("po.author_id = ANY(%s::uuid[])", [recipients]),
        }

    def items_of(self, recipients: list[str], source: PostgresSource) -> dict[ItemKey, Document]:
        sql, params = self._query(self._for_recipients(recipients))
        return dict(item_doc(row) for row in source.rows(sql, params))

    def _unread(self, recipients: list[str], source: PostgresSource) -> dict[ItemKey, Document]:
        sql, params = self._query(self._for_recipients(recipients))
        return dict(unread_doc(r, times) for r, times in source.rows(UNREAD_TIMES.format(items=sql), params))

    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        follows: list[tuple[str, str]] = []
        posts: dict[str, set[str]] = defaultdict(set)  # kind -> post ids
        counters: list[str] = []
        for key in set(keys):
            parts = key.id.split(":")
            if key.collection != COLLECTION or not parts or parts[0] != key.partition or not is_uuid(parts[0]):
                continue  # a store may hold anything: not an item, removed
            if len(parts) == 2 and parts[1] == UNREAD:
                counters.append(parts[0])
            elif len(parts) == 3 and is_uuid(parts[2]):
                if parts[1] == FOLLOW:
                    follows.append((parts[0], parts[2]))
                elif parts[1] in GROUPED:
                    posts[parts[1]].add(parts[2])
        wanted: dict[str, tuple[str, list[Any]]] = {}
        if follows:
            wanted[FOLLOW] = (
                "(f.followee_id, f.follower_id) IN (SELECT * FROM unnest(%s::uuid[], %s::uuid[]))",
                [[r for r, _ in follows], [a for _, a in follows]],
            )
        for kind, ids in posts.items():
            wanted[kind] = ("po.id = ANY(%s::uuid[])", [sorted(ids)])
        asked = set(keys)
        out: dict[ItemKey, Document] = {}
        if wanted:
            sql, params = self._query(wanted)
            for row in source.rows(sql, params):
                key, doc = item_doc(row)
                if key in asked:
                    out[key] = doc
        if counters:
            out.update(self._unread(sorted(set(counters)), source))
        return out

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        sql, params = self._query({kind: ("TRUE", []) for kind in PARTS})
        for row in source.stream(sql, params):
            yield item_doc(row)
        for recipient, times in source.stream(UNREAD_TIMES.format(items=sql), params):
            yield unread_doc(recipient, times)

    # -- verify -------------------------------------------------------------------------------------
    def judged(self, doc: Document, at: datetime) -> Document | None:
        """An item expiring within the margin of ``at`` (or already expired) is not judged (None);
        a counter is judged on its unread items not yet expired at ``at``, and not at all while
        one of them is within the margin."""
        early, late = iso(at - self.margin), iso(at + self.margin)
        if doc.get("kind") != UNREAD:
            return doc if str(doc.get("expiresAt", "")) >= late else None
        expiries = [str(e) for e in doc.get("unreadExpiresAt", ())]
        if any(early <= e < late for e in expiries):
            return None
        left = [e for e in expiries if e >= late]
        if not left:
            return None
        if len(left) == len(expiries):
            return doc
        return {**doc, "count": len(left), "expiresAt": left[-1], "unreadExpiresAt": left}


DESCRIPTOR = Descriptor(
    "notifications", NotificationsProjection(), "cosmos", CONTAINERS,
    documents=DOCUMENTS["notifications"], stored=STORED["notifications"],
    cosmos_account="notifications",
)
