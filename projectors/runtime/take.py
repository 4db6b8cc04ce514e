"""Taking batches from a faust stream without acknowledging them: faust's own ``Stream.noack_take``,
with one more reason to hand a batch over.

faust's ``noack_take(max_, within)`` hands its buffer over when it holds ``max_`` events, or when a
timer of ``within`` seconds fires; the timer runs all the time, so at a low rate each event waits
half the timer on average (50 ms at 0.1 s) before the projector sees it. :class:`BatchTaker`
with ``natural=True`` also hands the buffer over as soon as the stream's channel holds nothing
more and no batch is being written: a change alone goes to the projector at once; while a batch
is being written the buffer keeps filling, and goes over the moment that write ends (a burst is
applied in big batches, and a change waits for at most the one write before it).

Everything else is faust's code as it is (faust-streaming 0.15, ``faust/streams.py``, BSD
licence): the same buffer, filled by a processor while the stream is drained in the background,
the same strict bound of ``max_`` events, and no acknowledgement: the caller acknowledges each
event once it was written (``Stream.ack``), so an event is never committed before its batch was
applied. With ``natural=False`` this is ``noack_take`` itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


def channel_empty(stream: Any) -> bool:
    """Whether the stream's channel holds no event yet to be taken (a channel without a queue of
    its own counts as empty)."""
    queue = getattr(stream.channel, "queue", None)
    return queue is None or queue.empty()


class BatchTaker:
    """Lists of at most ``max_`` events (faust ``EventT``) of ``stream``, unacknowledged, handed
    over when full, after ``within`` seconds, or (``natural``) as soon as the channel is empty while
    no batch is being written. The caller says when a write starts and ends (``writing``,
    :meth:`written`)."""

    def __init__(self, stream: Any, max_: int, within: float, natural: bool) -> None:
        self.stream, self.max, self.within, self.natural = stream, max_, within, natural
        self.writing = False
        self._buffer: list[Any] = []
        self._ready = asyncio.Event()  # hand the buffer over

    def written(self) -> None:
        """The batch being written was written: what the buffer holds goes over now."""
        self.writing = False
        if self.natural and self._buffer:
            self._ready.set()

    async def batches(self) -> AsyncIterator[list[Any]]:
        stream, max_ = self.stream, self.max
        if not self.natural:
            async for events in stream.noack_take(max_, within=self.within):
                yield events
            return

        buffer, ready = self._buffer, self._ready
        consumed = asyncio.Event()
        consuming: asyncio.Future[None] | None = None
        enable_acks: bool = stream.enable_acks

        async def add_to_buffer(value: Any) -> Any:
            nonlocal consuming
            try:
                if consuming is not None:  # the buffer is being handed over: wait until it was emptied
                    try:
                        await consuming
                    finally:
                        consuming = None
                event = stream.current_event
                if event is None:
                    raise RuntimeError("take buffer found current_event is None")
                buffer.append(event)
                if len(buffer) >= max_:
                    ready.set()
                    consumed.clear()
                    await stream.wait(consumed)  # never more than max_ events in a batch
                elif not self.writing and channel_empty(stream):
                    ready.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stream.log.exception("Error adding to take buffer: %r", exc)
                await stream.crash(exc)
            return value

        stream.enable_acks = False  # the caller acknowledges each event once written
        stream.add_processor(add_to_buffer)
        stream._enable_passive(stream.channel)
        try:
            while not stream.should_stop:
                await stream.wait_for_stopped(ready, timeout=self.within)
                if buffer:
                    consuming = stream.loop.create_future()
                    try:
                        yield list(buffer)
                    finally:
                        buffer.clear()
                        if consuming is not None and not consuming.done():
                            consuming.set_result(None)
                        ready.clear()
                        consumed.set()
        finally:
            stream.enable_acks = enable_acks
            stream._processors.remove(add_to_buffer)
