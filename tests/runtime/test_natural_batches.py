"""Natural batching (``worker_parts.natural_batches``), pure logic: a scripted stand-in for the faust
stream it iterates (its events, what its channel's queue still holds, its acks switch). The real
workers run it in tests/pipeline and the stack tests."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from projectors.runtime.worker_parts import natural_batches


class Queue:
    def __init__(self, waiting: deque[str]) -> None:
        self.waiting = waiting

    def empty(self) -> bool:
        return not self.waiting


class Channel:
    def __init__(self, waiting: deque[str]) -> None:
        self.queue = Queue(waiting)


class Stream:
    """Yields the events of ``arrivals`` (each a burst: the events faust holds at once), with
    ``current_event`` set as faust sets it; records whether acks were on for each event."""

    def __init__(self, arrivals: list[list[str]], stop_after: int | None = None) -> None:
        self.arrivals, self.stop_after = arrivals, stop_after
        self.waiting: deque[str] = deque()
        self.channel = Channel(self.waiting)
        self.enable_acks = True
        self.current_event: Any = None
        self.acked_by_faust: list[str] = []

    async def __aiter__(self) -> Any:
        given = 0
        for burst in self.arrivals:
            self.waiting.extend(burst)
            while self.waiting:
                if given == self.stop_after:
                    return  # the stream stops (a rebalance, a pause), events still queued
                given += 1
                event = self.waiting.popleft()
                self.current_event = event
                yield event
                if self.enable_acks:
                    self.acked_by_faust.append(event)
                self.current_event = None


def batches_of(arrivals: list[list[str]], size: int) -> tuple[list[list[str]], Stream]:
    async def run() -> tuple[list[list[str]], Stream]:
        stream = Stream(arrivals)
        out = []
        async for events, arrived in natural_batches(stream, size, clocked=True):
            assert len(arrived) == len(events)
            out.append(events)
        return out, stream

    return asyncio.run(run())


def test_a_lone_event_goes_at_once_and_a_burst_goes_together() -> None:
    batches, _ = batches_of([["a"], ["b", "c", "d"], ["e"]], size=10)
    assert batches == [["a"], ["b", "c", "d"], ["e"]]


def test_a_burst_larger_than_a_batch_is_cut_at_the_batch_size_in_order() -> None:
    batches, _ = batches_of([["a", "b", "c", "d", "e"]], size=2)
    assert batches == [["a", "b"], ["c", "d"], ["e"]]


def test_faust_acknowledges_nothing_and_its_switch_is_restored() -> None:
    batches, stream = batches_of([["a", "b"], ["c"]], size=10)
    assert [e for b in batches for e in b] == ["a", "b", "c"]
    assert stream.acked_by_faust == []  # the caller acknowledges, once written
    assert stream.enable_acks  # as it was


def test_events_taken_when_the_stream_stops_are_neither_yielded_nor_acknowledged() -> None:
    async def run() -> tuple[list[list[str]], Stream]:
        stream = Stream([["a"], ["b", "c", "d"]], stop_after=3)
        return [events async for events, _ in natural_batches(stream, 10, clocked=False)], stream

    batches, stream = asyncio.run(run())
    assert batches == [["a"]]  # b and c were taken, d still queued: the group redelivers all three
    assert stream.acked_by_faust == [] and stream.enable_acks


class TimedStream(Stream):
    """Events that arrive one at a time, ``gap_s`` apart (faust's queue empty between them)."""

    def __init__(self, events: list[str], gap_s: float) -> None:
        super().__init__([])
        self.events, self.gap_s = events, gap_s

    async def __aiter__(self) -> Any:
        for event in self.events:
            await asyncio.sleep(self.gap_s)
            self.current_event = event
            yield event
            if self.enable_acks:
                self.acked_by_faust.append(event)
            self.current_event = None
        await asyncio.sleep(0.2)  # the stream stays open a while (a stop drops what was not yielded)


def test_events_that_arrive_while_a_batch_is_written_join_the_next_batch() -> None:
    async def run() -> list[list[str]]:
        stream = TimedStream(["a", "b", "c", "d", "e"], gap_s=0.01)
        out: list[list[str]] = []
        writing: asyncio.Future[None] | None = None

        async def write() -> None:
            await asyncio.sleep(0.035)  # a batch takes about three events' gaps to write

        def being_written() -> asyncio.Future[None] | None:
            return writing

        async for events, _ in natural_batches(stream, 100, clocked=False, writing=being_written):
            out.append(events)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(write())
        if writing is not None:
            await writing
        return out

    batches = asyncio.run(run())
    assert batches[0] == ["a"]  # nothing being written: at once
    assert [e for b in batches for e in b] == ["a", "b", "c", "d", "e"]
    assert len(batches) < 5 and max(len(b) for b in batches[1:]) >= 2  # the rest came in while a batch was written
