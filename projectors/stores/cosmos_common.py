"""What every part of the Cosmos store shares: the bookkeeping fields of an item, how a failure is
classed (:func:`severity`), an item's ``ttl``, and the counter of requests and request units."""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import DecodeError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from projectors.errors import Severity, response_headers, translated
from projectors.model import Document
from projectors.stores.guard import Held

BOOKKEEPING = {"sourceVersion", "deleted", "ttl", "_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"}
# what Azure documents as transient: timeout, gone (a partition moved), throttled, retry-with, server
RETRIABLE_STATUS = {408, 410, 429, 449, 500, 502, 503, 504}
# failures of the transport, not answers of the server: the request may never have arrived, or its
# answer was cut off (every write is versioned, so sending it again is safe)
TRANSPORT_ERRORS = (
    ServiceRequestError,
    ServiceResponseError,
    CosmosClientTimeoutError,
    DecodeError,
    ConnectionError,
    TimeoutError,
    OSError,
)
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NEW_SHARE_WEIGHT = 0.1
PATCH_MAX_OPS = 10  # Azure's limit of operations in one patch
BATCH_MAX = 100  # Azure's limit of operations in one transactional batch
BATCH_FROM = 3  # a partition's new items in a batch from this many on
MAX_CONFLICTS = 8  # create/patch races with other writers on one item before giving up for now
SCAN_TIMEOUT_S = 120.0  # one page of a whole-container read
REQUEST_KINDS = ("point_read", "point_write", "patch", "batch", "query", "cross_partition_query", "change_feed")
# The local Cosmos REST server answers a point read of a missing item with a 500 ("Cannot read
# properties of undefined") unless this header is set, when it answers 404 like Azure; Azure ignores
# it on point reads.
POINT_READ_HEADERS = {"x-ms-documentdb-query-enablecrosspartition": "true"}


def ttl_of(doc: Document, now: datetime | None = None) -> int:
    """A live item's ``ttl``: -1 (never expires), or for a document with an ``expiresAt`` (ISO-8601,
    UTC) the seconds from this write until then (at least 1: Cosmos counts from the item's last
    write)."""
    expires = doc.get("expiresAt")
    if not isinstance(expires, str):
        return -1
    left = datetime.fromisoformat(expires) - (now or datetime.now(UTC))
    return max(1, math.ceil(left.total_seconds()))


def severity(exc: Exception) -> Severity:
    """Transport failures and transient statuses may succeed when sent again; a wrong or read-only
    key (401, 403) is the configuration; the server's other definite refusals (400 bad request,
    404, 413 too large...) refuse the item."""
    if isinstance(exc, CosmosHttpResponseError):
        if exc.status_code is None or exc.status_code in RETRIABLE_STATUS:
            return Severity.RETRIABLE
        return Severity.CONFIGURATION if exc.status_code in (401, 403) else Severity.REFUSED
    return Severity.RETRIABLE if isinstance(exc, TRANSPORT_ERRORS) else Severity.REFUSED


def translated_error(exc: Exception) -> Exception:
    return translated("Cosmos", exc, severity(exc))


def live_doc(item: Mapping[str, Any]) -> Document | None:
    if item.get("deleted"):
        return None
    return {k: v for k, v in item.items() if k not in BOOKKEEPING}


def held(item: Mapping[str, Any] | None) -> Held | None:
    if item is None:
        return None
    return Held(int(item.get("sourceVersion", -1)), live_doc(item))


class RequestCounter:
    """Requests sent, by kind, and the request units the server charged for them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(REQUEST_KINDS, 0)
        self.request_units = 0.0

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def hook(self, headers: Mapping[str, str], _body: object = None) -> None:
        charge = headers.get("x-ms-request-charge") if headers else None
        if charge:
            with self._lock:
                self.request_units += float(charge)

    @contextlib.contextmanager
    def sent(self, kind: str) -> Iterator[None]:
        """One request of ``kind``; its charge comes through :meth:`hook` (``response_hook``), or
        from the error when it was refused (a 404, 409 or 412 costs request units on Azure)."""
        self.count(kind)
        try:
            yield
        except Exception as exc:
            self.hook(response_headers(exc))
            raise

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {**self.counts, "request_units": round(self.request_units, 2)}
