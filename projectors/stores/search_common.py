"""What both search backends share: the indexes, their filterable fields, and query parsing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

INDEXES = ("posts", "users")
WORD = re.compile(r"\w+", re.UNICODE)
FILTERS = {"posts": ("authorId", "topics", "createdAfter", "createdBefore"), "users": ()}


def words(query: str) -> list[str]:
    """A user's query as plain words: search syntax in it is never interpreted."""
    return WORD.findall(query)[:32]


def check(index: str, filters: Mapping[str, Any]) -> None:
    if index not in INDEXES:
        raise ValueError(f"unknown search index {index!r} (known: {', '.join(INDEXES)})")
    unknown = set(filters) - set(FILTERS[index])
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(sorted(unknown))} for {index} (known: {FILTERS[index]})")


def topics_of(filters: Mapping[str, Any]) -> list[str]:
    value = filters.get("topics")
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
