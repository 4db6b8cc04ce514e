"""The feed's first page from Redis (the ``redis`` projection's hot pages) against the same page from
the feed's Cosmos containers, for ``projectors bench-reads`` (``feed_page_redis`` beside ``feed_page``).

The bench's own reader and its HTTP read API read the Cosmos containers only
(``PROJECTORS_REDIS_FEED_PAGE_SIZE=0``, :func:`cosmos_only`), so ``feed_page`` stays the figure it
was. :class:`HotFeed` reads with the default page size: it reads each timed user's first page once
(misses: the reader asks the redis worker for them), waits until Redis holds every one of those
pages, then the bench times the hits; it counts the answers Redis gave (the
``projectors_read_feed_first_pages`` counter, in-process and from the second HTTP reader's
``/metrics``) and compares a sample of Redis's answers with Cosmos's for the same users.
"""

from __future__ import annotations

import random
import time
import urllib.request
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from projectors.read.client import ReadClient
from projectors.settings import Settings
from projectors.stack.commands import Reader
from projectors.stack.local import free_port

FIRST_PAGES_METRIC = "projectors_read_feed_first_pages_total"
HELD_WAIT_S = 600.0  # at most this long for the redis worker to write the pages asked for
COMPARED = 20  # users whose Redis page is compared with their Cosmos page, each measurement
LIMIT = 50


def cosmos_only(settings: Settings) -> Settings:
    """``settings`` with no feed pages from Redis: every feed read goes to the feed's containers."""
    redis = settings.redis.model_copy(update={"feed_page_size": 0})
    return settings.model_copy(update={"redis": redis})


class PagesReader(Reader):
    """A second `projectors serve` of the bench's stack, on its own port, answering first pages from
    Redis (the stack's ``reader`` answers them from Cosmos only)."""

    name = "reader-redis-pages"


def pages_reader_settings(settings: Settings) -> Settings:
    read = settings.read.model_copy(update={"api_port": free_port()})
    return settings.model_copy(update={"read": read})


def hits_in_process() -> float:
    return REGISTRY.get_sample_value(FIRST_PAGES_METRIC, {"answered_from": "redis"}) or 0.0


def hits_over_http(settings: Settings) -> float:
    """The redis-answered first pages the HTTP reader of ``settings`` counted (its ``/metrics``)."""
    url = f"http://{settings.read.api_host}:{settings.read.api_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == FIRST_PAGES_METRIC and sample.labels.get("answered_from") == "redis":
                return float(sample.value)
    return 0.0


class HotFeed:
    """First pages of ``users`` (the timed ones) read through Redis, and checked against Cosmos."""

    def __init__(self, settings: Settings, http_settings: Settings, users: list[str]) -> None:
        self.client = ReadClient(settings)  # the default page size: first pages from Redis
        self.http_settings = http_settings
        self.users = users

    def held(self) -> int:
        """How many of the users' pages Redis holds now (``EXISTS`` as the reader, one pipeline)."""
        redis = self.client.redis_reads[0]
        prefix = redis.prefix(self.client.generation("redis"))
        pipe = redis.client.pipeline(transaction=False)
        for user in self.users:
            pipe.exists(f"{prefix}feed:{user}")
        return sum(int(n) for n in pipe.execute())

    def warm(self, wait_s: float = HELD_WAIT_S) -> dict[str, float]:
        """Each user's first page read once (a miss asks the worker for it), then until Redis holds
        every page (or ``wait_s``: then RuntimeError, the hits could not be timed)."""
        started = time.monotonic()
        for user in self.users:
            self.client.feed_page(user, limit=LIMIT)
        read = time.monotonic()
        deadline = read + wait_s
        while (held := self.held()) < len(self.users):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis holds {held} of the {len(self.users)} first pages asked for after "
                                   f"{wait_s:.0f}s: is the redis worker running?")
            time.sleep(0.2)
        return {"warm_reads_s": read - started, "pages_written_s": time.monotonic() - read}

    def call(self, rng: random.Random) -> Any:
        return self.client.feed_page(rng.choice(self.users), limit=LIMIT)

    def path(self, rng: random.Random) -> str:
        return f"/v1/users/{rng.choice(self.users)}/feed?limit={LIMIT}"

    def mismatches(self, cosmos: ReadClient, rng: random.Random) -> tuple[int, int, int]:
        """(pages compared, their items, pages that differ): Redis's first page against Cosmos's for
        the same user (items, their order and the next page's cursor; a Cosmos answer that fell back
        differs)."""
        sample = rng.sample(self.users, min(COMPARED, len(self.users)))
        differ = items = 0
        for user in sample:
            before = hits_in_process()
            hot = self.client.feed_page(user, limit=LIMIT)
            from_redis = hits_in_process() - before == 1
            cold = cosmos.feed_page(user, limit=LIMIT)
            same = list(hot) == list(cold) and hot.next_cursor == cold.next_cursor
            items += len(hot)
            differ += not (from_redis and same and cold.source == "store")
        return len(sample), items, differ

    def close(self) -> None:
        self.client.close()


def settled_mismatches(settings: Settings, users: list[str], rng: random.Random) -> dict[str, float]:
    """Once the writes stopped and the pipeline caught up: ``COMPARED`` users' pages held by Redis
    compared with Cosmos's (under writes the two workers are behind by different amounts)."""
    cosmos = ReadClient(cosmos_only(settings))
    hot = HotFeed(settings, settings, rng.sample(users, min(COMPARED, len(users))))
    try:
        hot.warm()
        compared, items, differ = hot.mismatches(cosmos, rng)
    finally:
        hot.close()
        cosmos.close()
    return {"compared": compared, "compared_items": items, "mismatches": differ}
