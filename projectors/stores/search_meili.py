"""Meilisearch (production search) with the version guard.

Indexes ``posts`` and ``users``, primary key ``id``. Each document carries ``sourceVersion`` and
``deleted``; a removal replaces the document with a tombstone ``{id, sourceVersion, deleted: true}``
that every search filters out (``deleted = false``). Posts also carry ``createdAtTs`` (epoch
seconds) for range filters. Meilisearch has no conditional write: the guard reads the batch's
versions first, so two workers writing the same document at the same moment can race (the
projectors' consumer groups keep that to a rebalance window; ``verify`` would show it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import meilisearch
from meilisearch.errors import MeilisearchApiError, MeilisearchCommunicationError, MeilisearchTimeoutError

from projectors.errors import Severity, translated
from projectors.model import ApplyResult, Document, ItemFailure, ItemKey, Operation, Put
from projectors.stores.guard import Held, Outcome, newest_per_key, outcome, tally
from projectors.stores.search_common import INDEXES, check, topics_of, words

BOOKKEEPING = {"sourceVersion", "deleted", "createdAtTs"}
SETTINGS: dict[str, dict[str, Any]] = {
    "posts": {
        "searchableAttributes": ["body", "topics"],
        "filterableAttributes": ["id", "authorId", "topics", "createdAtTs", "deleted"],
        "sortableAttributes": ["createdAtTs"],
    },
    "users": {
        "searchableAttributes": ["handle", "displayName", "bio"],
        "filterableAttributes": ["id", "deleted"],
    },
}
TASK_TIMEOUT_MS = 120_000


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def severity(exc: Exception) -> Severity:
    """Timeouts, throttling and server errors may pass; a wrong key (401, 403) is the configuration;
    other answers refuse the item."""
    if isinstance(exc, MeilisearchApiError):
        if exc.status_code in (408, 429) or exc.status_code >= 500:
            return Severity.RETRIABLE
        return Severity.CONFIGURATION if exc.status_code in (401, 403) else Severity.REFUSED
    transient = (MeilisearchCommunicationError, MeilisearchTimeoutError, ConnectionError, TimeoutError)
    return Severity.RETRIABLE if isinstance(exc, transient) else Severity.REFUSED


class MeilisearchStore:
    def __init__(self, url: str, api_key: str, prefix: str = "") -> None:
        self.client = meilisearch.Client(url, api_key or None, timeout=30)
        self.prefix = prefix

    def _uid(self, index: str) -> str:
        return f"{self.prefix}{index}"

    def ensure_schema(self) -> None:
        try:
            for index in INDEXES:
                task = self.client.create_index(self._uid(index), {"primaryKey": "id"})
                self.client.wait_for_task(task.task_uid, timeout_in_ms=TASK_TIMEOUT_MS)  # fails harmlessly if exists
                task = self.client.index(self._uid(index)).update_settings(SETTINGS[index])
                self._wait(task.task_uid)
        except Exception as exc:
            raise translated("Meilisearch", exc, severity(exc)) from exc

    def _wait(self, uid: int) -> None:
        task = self.client.wait_for_task(uid, timeout_in_ms=TASK_TIMEOUT_MS)
        if task.status != "succeeded":
            raise RuntimeError(f"Meilisearch task {uid} {task.status}: {task.error}")

    def ping(self) -> bool:
        try:
            return bool(self.client.is_healthy())
        except Exception:
            return False

    def close(self) -> None:
        pass

    def drop(self) -> None:
        """Delete this store's indexes (a rebuild drops the ones it swapped out)."""
        for index in INDEXES:
            task = self.client.delete_index(self._uid(index))
            self.client.wait_for_task(task.task_uid, timeout_in_ms=TASK_TIMEOUT_MS)  # fails harmlessly if absent

    def swap(self, other_prefix: str) -> None:
        """Swap the contents of this store's indexes with those under ``other_prefix``, atomically
        (one ``swap-indexes`` task: readers see the old pair or the new pair, never a mix)."""
        task = self.client.swap_indexes(
            [{"indexes": [self._uid(index), f"{other_prefix}{index}"]} for index in INDEXES]
        )
        self._wait(task.task_uid)

    # -- writes -------------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        by_index: dict[str, list[Operation]] = defaultdict(list)
        for op in newest:
            by_index[op.key.collection].append(op)
        outcomes: list[Outcome] = []
        failures: list[ItemFailure] = []
        for index, group in by_index.items():
            if index not in INDEXES:
                failures += [ItemFailure(op, ValueError(f"unknown index {index!r}"), Severity.REFUSED) for op in group]
                continue
            try:
                held = self._held(index, [op.key.id for op in group])
                decided = [(op, outcome(op, held.get(op.key.id))) for op in group]
                docs = [self._body(op) for op, o in decided if o is not Outcome.STALE]
                if docs:
                    task = self.client.index(self._uid(index)).add_documents(docs, primary_key="id")
                    self._wait(task.task_uid)
                outcomes += [o for _, o in decided]
            except Exception as exc:
                failures += [ItemFailure(op, exc, severity(exc)) for op in group]
        changed, stale, unchanged = tally(outcomes)
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _held(self, index: str, ids: list[str]) -> dict[str, Held]:
        out: dict[str, Held] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            result = self.client.index(self._uid(index)).get_documents(
                {"filter": f"id IN [{', '.join(_quote(i) for i in chunk)}]", "limit": len(chunk)}
            )
            for document in result.results:
                doc = dict(document)
                out[str(doc["id"])] = Held(int(doc.get("sourceVersion", -1)), self._live(doc))
        return out

    @staticmethod
    def _live(doc: Mapping[str, Any]) -> Document | None:
        if doc.get("deleted"):
            return None
        return {k: v for k, v in doc.items() if k not in BOOKKEEPING}

    @staticmethod
    def _body(op: Operation) -> dict[str, Any]:
        if isinstance(op, Put):
            body = {**op.doc, "id": op.key.id, "sourceVersion": op.version, "deleted": False}
            if "createdAt" in op.doc:
                body["createdAtTs"] = epoch(str(op.doc["createdAt"]))
            return body
        return {"id": op.key.id, "sourceVersion": op.version, "deleted": True}

    # -- reads --------------------------------------------------------------------------------------
    def live_items(self, collection: str, page: int = 1000) -> Iterator[tuple[ItemKey, Document]]:
        offset = 0
        while True:
            result = self.client.index(self._uid(collection)).get_documents(
                {"filter": "deleted = false", "limit": page, "offset": offset}
            )
            for document in result.results:
                doc = self._live(dict(document))
                if doc is not None:
                    yield ItemKey(collection, str(doc["id"])), doc
            offset += len(result.results)
            if len(result.results) < page:
                return

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """The live documents of ``keys`` (absent: no document or a tombstone)."""
        by_index: dict[str, list[str]] = {}
        for key in keys:
            by_index.setdefault(key.collection, []).append(key.id)
        out: dict[ItemKey, Document] = {}
        for index, ids in by_index.items():
            for item_id, held in self._held(index, ids).items():
                if held.doc is not None:
                    out[ItemKey(index, item_id)] = held.doc
        return out

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return [key for key, doc in self.live_items(collection) if all(doc.get(k) == v for k, v in equals.items())]

    def search(self, index: str, query: str, filters: Mapping[str, Any], limit: int = 20) -> list[dict[str, Any]]:
        check(index, filters)
        conditions = ["deleted = false"]
        if "authorId" in filters:
            conditions.append(f"authorId = {_quote(str(filters['authorId']))}")
        topics = topics_of(filters)
        if topics:
            conditions.append(f"topics IN [{', '.join(_quote(t) for t in topics)}]")
        if "createdAfter" in filters:
            conditions.append(f"createdAtTs >= {epoch(str(filters['createdAfter']))}")
        if "createdBefore" in filters:
            conditions.append(f"createdAtTs < {epoch(str(filters['createdBefore']))}")
        # every word must match, as in the embedded engine (Meilisearch's default, "last", drops the
        # query's last words when too few documents hold them all)
        params: dict[str, Any] = {"filter": " AND ".join(conditions), "limit": limit, "matchingStrategy": "all"}
        terms = words(query)
        if not terms and index == "posts":
            params["sort"] = ["createdAtTs:desc"]
        hits = self.client.index(self._uid(index)).search(" ".join(terms), params)["hits"]
        return [{k: v for k, v in hit.items() if k not in BOOKKEEPING} for hit in hits]
