"""Natural batching's buffer (pure logic: a scripted stand-in for the faust stream it is a processor
of; the real workers run it in tests/pipeline and the stack tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from projectors.runtime.take import NaturalTake


class Channel:
    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


class Stream:
    """What NaturalTake uses of a faust stream: its processors, the current event, its acks switch,
    its waits. ``feed`` runs the processors on one event, as the stream's passive iteration does."""

    def __init__(self) -> None:
        self.enable_acks = True
        self._processors: list[Any] = []
        self.current_event: Any = None
        self.channel = Channel()
        self.passive = False
        self.stopped = asyncio.Event()

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, _channel: Any) -> None:
        self.passive = True

    async def wait(self, event: asyncio.Event) -> None:
        await asyncio.wait([asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.stopped.wait())],
                           return_when=asyncio.FIRST_COMPLETED)

    async def wait_for_stopped(self, event: asyncio.Event) -> bool:
        await self.wait(event)
        return self.stopped.is_set()

    async def feed(self, event: Any) -> None:
        self.current_event = event
        for processor in self._processors:
            await processor(event)
        self.current_event = None


def test_everything_buffered_is_handed_over_in_order_and_nothing_is_acknowledged() -> None:
    async def scenario() -> None:
        stream = Stream()
        take = NaturalTake(stream, max_events=10, stamped=True)
        take.start()
        assert stream.passive and not stream.enable_acks  # the caller acknowledges, faust does not
        for event in ("a", "b", "c"):
            await stream.feed(event)
        assert await take.wait()
        events, arrived = take.take()
        assert events == ["a", "b", "c"] and len(arrived) == 3 and arrived == sorted(arrived)
        assert take.take() == ([], [])
        waiting = asyncio.ensure_future(take.wait())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing buffered: no batch, no timer
        await stream.feed("d")
        assert await waiting and take.take()[0] == ["d"]
        take.stop()
        assert stream.enable_acks and stream._processors == []

    asyncio.run(scenario())


def test_a_full_buffer_holds_the_stream_until_it_is_taken() -> None:
    async def scenario() -> None:
        stream = Stream()
        take = NaturalTake(stream, max_events=2)
        take.start()
        await stream.feed(1)
        await stream.feed(2)
        third = asyncio.ensure_future(stream.feed(3))
        await asyncio.sleep(0.01)
        assert not third.done()  # the stream's iteration waits: at most max_events in a batch
        assert take.take() == ([1, 2], [])
        await third
        assert take.take()[0] == [3]

    asyncio.run(scenario())


def test_wait_ends_when_the_stream_stops() -> None:
    async def scenario() -> None:
        stream = Stream()
        take = NaturalTake(stream, max_events=2)
        take.start()
        waiting = asyncio.ensure_future(take.wait())
        await asyncio.sleep(0)
        stream.stopped.set()
        assert await waiting is False

    asyncio.run(scenario())
