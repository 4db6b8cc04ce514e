"""What a read returns: a page, counters or items, marked with where the answer came from, and the
cut of a keyset page with the cursor of the next one (``read/cursor.py``)."""

from __future__ import annotations

from typing import Any

from projectors.read.cursor import Cursors


class Page(list[dict[str, Any]]):
    """A list of items, with where it came from: ``"store"`` or ``"postgres"`` (the fallback), and,
    for a read given a writer's token, whether the projection had applied the write (``caught_up``).
    A paged list (feed, notifications) has ``next_cursor``: the cursor of the next page, None at the end."""

    source: str = "store"
    caught_up: bool | None = None
    next_cursor: str | None = None


class Counts(dict[str, dict[str, int]]):
    """Counters by subject, with ``source`` and ``caught_up`` as :class:`Page`."""

    source: str = "store"
    caught_up: bool | None = None


class Items(dict[str, Any]):
    """Items by id, with ``source`` and ``caught_up`` as :class:`Page`."""

    source: str = "store"
    caught_up: bool | None = None


def marked(answer: Any, source: str) -> Any:
    out = Items(answer) if isinstance(answer, Items) else Counts(answer) if isinstance(answer, dict) else Page(answer)
    out.source = source
    if isinstance(out, Page):
        out.next_cursor = getattr(answer, "next_cursor", None)
    return out


def paged(cursors: Cursors, kind: str, user: str, items: list[dict[str, Any]], limit: int) -> Page:
    """The first ``limit`` of ``items`` (already in the list's order, after the cursor's position,
    one more than a page when more follow) with the cursor of the next page."""
    page = Page(items[:limit])
    page.next_cursor = cursors.next_cursor(kind, user, page, len(items) > limit)
    return page
