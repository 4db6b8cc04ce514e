"""One projection's verdict (:class:`Drift`) and how an item is compared with its spec."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from projectors.model import Document, ItemKey
from projectors.operations import checkpoint as cp
from projectors.operations.caught_up import PipelineWait
from projectors.projections import Projection


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def digest(doc: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(canonical(doc).encode(), digest_size=16).digest()


@dataclass(frozen=True)
class Sample:
    """A seeded random subset of the spec's keys: each key is in it when a hash of the seed and
    the key falls below ``fraction`` (the same seed and keys: the same subset, on any machine)."""

    fraction: float
    seed: int

    def __contains__(self, key: ItemKey) -> bool:
        h = hashlib.blake2b(f"{self.seed}\x00{key.collection}\x00{key.id}\x00{key.partition}".encode(), digest_size=8)
        return int.from_bytes(h.digest(), "big") < self.fraction * 2**64


def parse_fraction(text: str) -> float:
    """``1%`` or ``0.01``: a share of the keys, more than 0 and at most 1."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value <= 1:
        raise ValueError(f"a sample is more than 0 and at most 1 (or 100%), not {text!r}")
    return value


@dataclass
class Drift:
    """One projection's verdict. ``checked``: spec items compared in the full read (or the sample);
    ``held``: live items the store holds (of the sampled keys, in a sample); the drift counts are
    those of the last attempt."""

    projection: str
    checked: int = 0
    held: int = 0
    missing: int = 0
    extra: int = 0
    wrong: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    items_read: int = 0  # store items read in all, whole-store reads and point reads
    full_reads: int = 0  # whole-store reads
    attempts: int = 0  # the first check and every re-check of drifted keys
    budget_wait_s: float = 0.0  # time the read budget added
    request_units: float = 0.0  # what the reads cost, where the store reports it (Cosmos)
    digests_read: int = 0  # range digests the store computed (FalkorDB), instead of a whole read
    sample: Sample | None = None
    spec_items: int = 0  # spec items streamed (a sample is drawn from them)
    pipeline: PipelineWait | None = None
    keys: set[ItemKey] = field(default_factory=set, repr=False)  # the drifted keys, for a repair
    mode: str = "full"  # full, incremental or sample
    full_because: str | None = None  # why a verify that could be incremental ran in full
    checkpoint: cp.Checkpoint | None = None  # the checkpoint an incremental verify started from
    events: int = 0  # records read from the topics (incremental)
    store_changes: int = 0  # items the store's change feed named since the checkpoint (incremental, Cosmos)
    recorded: cp.Checkpoint | None = None  # the checkpoint this verify, clean, committed
    start: dict[cp.Position, int] = field(default_factory=dict, repr=False)  # the topics' ends at the start
    started_at: float = 0.0
    generation: int | None = None  # the live store generation at the start (incremental or recorded)

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.wrong

    def note(
        self, kind: str, key: ItemKey, expected: Mapping[str, Any] | None, limit: int,
        held: Mapping[str, Any] | None = None,
    ) -> bool:
        """Keep ``key`` as one of the first ``limit`` examples (a wrong item with the fields that
        differ, ``held`` being the store's item); True when it was kept."""
        if len(self.samples) >= limit:
            return False
        sample: dict[str, Any] = {
            "kind": kind,
            "collection": key.collection,
            "id": key.id,
            "partition": key.partition,
            "expected": expected,
        }
        if kind == "wrong" and expected is not None and held is not None:
            sample["differs"] = field_diff(expected, held)
        self.samples.append(sample)
        return True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "projection": self.projection,
            "checked": self.checked,
            "held": self.held,
            "missing": self.missing,
            "extra": self.extra,
            "wrong": self.wrong,
            "samples": self.samples,
            "itemsRead": self.items_read,
            "fullReads": self.full_reads,
            "attempts": self.attempts,
            "readBudgetWaitS": round(self.budget_wait_s, 1),
            "requestUnits": round(self.request_units, 2),
            "digestsRead": self.digests_read,
        }
        if self.sample is not None:
            out["sample"] = {"fraction": self.sample.fraction, "seed": self.sample.seed, "specItems": self.spec_items}
        if self.pipeline is not None:
            out["pipeline"] = self.pipeline.as_dict()
        out["mode"] = self.mode
        if self.mode == "incremental":
            out["checkpoint"] = None if self.checkpoint is None else self.checkpoint.as_dict()
            out["eventsRead"] = self.events
            out["storeChanges"] = self.store_changes
        if self.full_because is not None:
            out["fullBecause"] = self.full_because
        if self.recorded is not None:
            out["checkpointRecorded"] = self.recorded.as_dict()
        return out


def field_diff(expected: Mapping[str, Any], held: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The top-level fields in which ``held`` differs from ``expected``, each with both values
    (a side where the field is absent has no entry)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(expected) | set(held)):
        if name in expected and name in held and canonical({"v": expected[name]}) == canonical({"v": held[name]}):
            continue
        out[name] = {side: doc[name] for side, doc in (("expected", expected), ("held", held)) if name in doc}
    return out


def describe_diff(differs: Mapping[str, Mapping[str, Any]], width: int = 40, fields: int = 6) -> str:
    """``field_diff`` in one line: ``likes: expected 3, held 2; body: expected "a", held (absent)``."""

    def shown(entry: Mapping[str, Any], side: str) -> str:
        if side not in entry:
            return "(absent)"
        text = json.dumps(entry[side], sort_keys=True, default=str, ensure_ascii=False)
        return text if len(text) <= width else text[: width - 1] + "…"

    parts = [
        f"{name}: expected {shown(entry, 'expected')}, held {shown(entry, 'held')}"
        for name, entry in list(differs.items())[:fields]
    ]
    if len(differs) > fields:
        parts.append(f"{len(differs) - fields} more field(s)")
    return "; ".join(parts) if parts else "no field differs now (changed since it was read)"


def judged(projection: Projection, doc: Document | None, at: datetime) -> Document | None:
    return None if doc is None else projection.judged(doc, at)


def compare(
    drift: Drift,
    keys: Sequence[ItemKey],
    spec: Mapping[ItemKey, Document],
    have: Mapping[ItemKey, Document],
    sample_limit: int,
    projection: Projection,
    at: datetime | None = None,
) -> None:
    """Count into ``drift`` how ``have`` (the store) differs from ``spec`` on ``keys`` (an item
    within a margin of its expiry, on either side, is not judged)."""
    at = at or datetime.now(UTC)
    for key in keys:
        doc, stored = judged(projection, spec.get(key), at), judged(projection, have.get(key), at)
        if (key in spec and doc is None) or (key in have and stored is None):
            continue
        if doc is not None and stored is None:
            drift.missing += 1
            drift.note("missing", key, doc, sample_limit)
        elif doc is None and stored is not None:
            drift.extra += 1
            drift.note("extra", key, None, sample_limit)
        elif doc is not None and stored is not None and digest(doc) != digest(stored):
            drift.wrong += 1
            drift.note("wrong", key, doc, sample_limit, held=stored)
        else:
            continue
        drift.keys.add(key)
