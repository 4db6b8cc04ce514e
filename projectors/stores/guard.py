"""The version guard every store applies, as pure functions (the stores only fetch and write).

A store holds, per item, the version of the operation that last wrote it, and for a removed item a
tombstone with its version. An operation applies only when its version is newer than both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from projectors.model import Document, ItemKey, Operation, Put


class Outcome(Enum):
    CHANGED = "changed"  # the live content changed (created, updated, removed)
    UNCHANGED = "unchanged"  # newer version, same content (the version is still recorded)
    STALE = "stale"  # not newer than what the store holds: nothing written


@dataclass(frozen=True, slots=True)
class Held:
    """What a store holds for one key: the version and the live document (None: a tombstone)."""

    version: int
    doc: Document | None


def newest_per_key(ops: Iterable[Operation]) -> tuple[list[Operation], int]:
    """Keep only the highest-version operation of each key; the others are stale by definition."""
    best: dict[ItemKey, Operation] = {}
    dropped = 0
    for op in ops:
        have = best.get(op.key)
        if have is None:
            best[op.key] = op
        else:
            dropped += 1
            if op.version > have.version:
                best[op.key] = op
    return list(best.values()), dropped


def outcome(op: Operation, held: Held | None) -> Outcome:
    if held is not None and held.version >= op.version:
        return Outcome.STALE
    live = held.doc if held is not None else None
    if isinstance(op, Put):
        return Outcome.UNCHANGED if live is not None and same(live, op.doc) else Outcome.CHANGED
    return Outcome.CHANGED if live is not None else Outcome.UNCHANGED


def same(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    return dict(a) == dict(b)


def tally(outcomes: Sequence[Outcome]) -> tuple[int, int, int]:
    """(changed, stale, unchanged) counts."""
    return (
        sum(o is Outcome.CHANGED for o in outcomes),
        sum(o is Outcome.STALE for o in outcomes),
        sum(o is Outcome.UNCHANGED for o in outcomes),
    )
