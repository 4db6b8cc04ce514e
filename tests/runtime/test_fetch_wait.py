"""The adaptive fetch wait: short while fetches bring records, doubling to the idle wait when not."""

from __future__ import annotations

import asyncio
from typing import Any

from projectors.runtime.faust_app import adapt_fetch_wait


class Fetcher:
    """aiokafka's fetcher as ``adapt_fetch_wait`` sees it: a wait each request is built with, and the
    coroutine that sends a request and says whether it brought records."""

    def __init__(self, answers: list[bool]) -> None:
        self._fetch_max_wait_ms = 1500
        self.answers = answers
        self.waits: list[int] = []
        self.now = 0.0  # seconds: each fetch takes the wait it asked for (the broker holds it) and 1 ms

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> bool:
        self.waits.append(self._fetch_max_wait_ms)  # the wait this request was built with
        self.now += (self._fetch_max_wait_ms + 1) / 1000
        return self.answers.pop(0)

    def fetch(self, times: int) -> None:
        async def fetch_all() -> None:
            for _ in range(times):
                await self._proc_fetch_request(None, 0, None)

        asyncio.run(fetch_all())


def test_the_wait_stays_short_while_records_came_recently_then_doubles_up_to_the_idle_wait() -> None:
    # records, then a quiet spell, then records again
    fetcher = Fetcher([True] + [False] * 13 + [True, False])
    adapt_fetch_wait(fetcher, busy_ms=10, idle_ms=100, clock=lambda: fetcher.now)
    fetcher.fetch(16)
    # short for 100 ms after the records (the gaps between capture's batches), then doubling
    assert fetcher.waits == [10] * 11 + [20, 40, 80, 100, 10]
    assert fetcher._fetch_max_wait_ms == 10  # records 10 ms ago: still flowing


def test_an_idle_wait_no_longer_than_the_busy_one_leaves_the_fetcher_as_it_is() -> None:
    fetcher = Fetcher([False, False])
    original = fetcher._proc_fetch_request
    adapt_fetch_wait(fetcher, busy_ms=100, idle_ms=100)
    assert fetcher._fetch_max_wait_ms == 100 and fetcher._proc_fetch_request == original
