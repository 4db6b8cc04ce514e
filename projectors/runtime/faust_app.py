"""The faust app class the workers run: faust's aiokafka transport with an adaptive fetch wait.

faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch as soon
as data arrives, so the value is harmless there. The local broker (Tansu 0.6) instead looks for
data at points of its own: when the fetch comes, then after half the wait, after three quarters,
and so on, halving what remains; a change that arrives while a fetch waits is found only at the
next point, so the wait adds to every event's commit -> visible latency. A short wait, though,
costs an idle worker (and the broker) one empty fetch per wait: measured, about 0.5 ms of CPU each
in the worker and as much in the broker. So a short wait adapts (with the defaults, 100 ms both, it is fixed):
``fetch_max_wait_ms`` as long as some fetch brought records within the last
``fetch_idle_wait_ms``, then doubled after each empty fetch up to ``fetch_idle_wait_ms``. While
events flow the wait stays short, also across the gaps between capture's batches (Debezium polls
every 50 ms, so at a few hundred changes a second most fetches between two batches come back
empty); an idle worker fetches only every ``fetch_idle_wait_ms`` (and the first event after a
quiet spell waits up to that long). The subclasses below change only that, on the aiokafka
consumer faust creates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from faust.transport.drivers import aiokafka as driver


def adapt_fetch_wait(
    fetcher: Any, busy_ms: int, idle_ms: int, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Make aiokafka's ``fetcher`` ask for ``busy_ms`` while some fetch brought records within the
    last ``idle_ms``, and after that twice the last wait (at most ``idle_ms``) after each empty
    one. The next fetch request reads ``_fetch_max_wait_ms`` when it is built."""
    fetch = fetcher._proc_fetch_request
    last_records = clock()

    async def adaptive(assignment: Any, node_id: Any, request: Any) -> bool:
        nonlocal last_records
        got: bool = await fetch(assignment, node_id, request)
        now = clock()
        if got:
            last_records = now
        flowing = (now - last_records) * 1000 < idle_ms
        fetcher._fetch_max_wait_ms = busy_ms if flowing else min(idle_ms, 2 * fetcher._fetch_max_wait_ms)
        return got

    fetcher._fetch_max_wait_ms = busy_ms
    if idle_ms > busy_ms:
        fetcher._proc_fetch_request = adaptive


def app_class(fetch_max_wait_ms: int, fetch_idle_wait_ms: int) -> type[faust.App]:
    class Consumer(AIOKafkaConsumer):  # type: ignore[misc]
        async def start(self) -> None:
            await super().start()
            adapt_fetch_wait(self._fetcher, fetch_max_wait_ms, fetch_idle_wait_ms)

    class ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by AIOKafkaConsumer.start()
            if fetch_idle_wait_ms > fetch_max_wait_ms:
                consumer.__class__ = Consumer  # the same consumer, with the adaptive wait once started
            return consumer

    class FaustConsumer(driver.Consumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):  # type: ignore[misc]
        pass

    Transport.Consumer = FaustConsumer

    class App(faust.App):  # type: ignore[misc]
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
