"""Opaque paging cursors: a position in one user's feed or notifications, signed.

Both lists are ordered newest first by ``(time, id)`` descending: the feed by ``(createdAt,
postId)``, notifications by ``(latestAt, id)``; of two items of the same time, the greater id comes
first (:data:`NEWEST_FIRST`, the one place the tie direction is set). A cursor holds the key of the
last item of a page; the next page is the items whose key is smaller (keyset paging), so a page
costs the same at any depth, and items added meanwhile (newer keys) never shift a page: they appear
on a fresh first page.

A cursor is ``base64url(payload).base64url(HMAC-SHA256)`` over the list's kind and the user it was
given for, with ``PROJECTORS_READ_CURSOR_KEY`` (empty: a key derived from the Cosmos read key, the
same for every read service of a deployment). A cursor that was altered, is of the other list, or
was given to another user raises :class:`InvalidCursor`: never a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projectors.errors import ProjectorsError

NEWEST_FIRST = True  # sort keys (time, id) descending: ties by the greater id first
FEED, NOTIFICATIONS = "feed", "notifications"
ORDER_FIELDS = {FEED: ("createdAt", "postId"), NOTIFICATIONS: ("latestAt", "id")}
SIGNATURE_BYTES = 16


class InvalidCursor(ProjectorsError):
    """A cursor that this service did not give for this list and user."""

    field = "cursor"


@dataclass(frozen=True, slots=True)
class Position:
    """The key of the last item of a page: the next page starts after it."""

    at: str
    id: str


def sort_key(kind: str, item: dict[str, Any]) -> tuple[str, str]:
    time_field, id_field = ORDER_FIELDS[kind]
    return str(item[time_field]), str(item[id_field])


def ordered(kind: str, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` in the list's order, each key once (the first seen kept)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        seen.setdefault(sort_key(kind, item), item)
    return [seen[k] for k in sorted(seen, reverse=NEWEST_FIRST)]


def past(kind: str, items: Iterable[dict[str, Any]], position: Position | None) -> list[dict[str, Any]]:
    """The items that come after ``position`` in the list's order (all without one)."""
    if position is None:
        return list(items)
    edge = (position.at, position.id)
    return [i for i in items if sort_key(kind, i) < edge]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Cursors:
    """Signs and checks cursors with one key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a cursor key must not be empty")
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def encode(self, kind: str, user: str, position: Position) -> str:
        payload = json.dumps([kind, user, position.at, position.id], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, kind: str, user: str, cursor: str | None) -> Position | None:
        """The position ``cursor`` holds (None: the first page); :class:`InvalidCursor` unless this
        key signed it for ``kind`` and ``user``."""
        if cursor is None or cursor == "":
            return None
        body, dot, signature = cursor.partition(".")
        try:
            payload, mac = _unb64(body), _unb64(signature)
        except (binascii.Error, ValueError):
            raise InvalidCursor("cursor: not a cursor this service gave") from None
        if not dot or not hmac.compare_digest(mac, self._sign(payload)):
            raise InvalidCursor("cursor: not a cursor this service gave (altered or from another deployment)")
        try:
            got_kind, got_user, at, item = json.loads(payload)
        except (ValueError, TypeError):
            raise InvalidCursor("cursor: not a cursor this service gave") from None
        if got_kind != kind:
            raise InvalidCursor(f"cursor: a cursor of {got_kind}, not of {kind}")
        if got_user != user:
            raise InvalidCursor("cursor: given for another user")
        return Position(str(at), str(item))

    def next_cursor(self, kind: str, user: str, page: list[dict[str, Any]], more: bool) -> str | None:
        """The cursor after ``page``'s last item when more items follow it, else None."""
        if not more or not page:
            return None
        at, item = sort_key(kind, page[-1])
        return self.encode(kind, user, Position(at, item))
