"""Natural batching for a faust stream: a batch is handed over as soon as the stream has nothing
more buffered (or the batch is full), not after a fixed wait.

One change alone is handed over at once; the changes that arrive while a batch is being written
wait in the next batch, which is handed over when that write ends: a burst goes in big batches,
a trickle in batches of one. ``within`` stays as a ceiling only (a batch never waits longer).

Acknowledgements are the caller's: nothing taken here is acknowledged (the stream's own acks are
off while the generator runs), so an event is acknowledged only once written, never on shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any


class Taken:
    """One batch: its events and, when ``clock`` is on, when each entered the worker's buffer."""

    __slots__ = ("arrived", "events", "handed")

    def __init__(self, events: list[Any], arrived: list[float]) -> None:
        self.events = events
        self.arrived = arrived
        self.handed = 0.0


async def natural_batches(
    stream: Any,
    max_: int,
    within: float,
    writer_free: Callable[[], Awaitable[None]] | None = None,
    clock: bool = False,
) -> AsyncIterator[Taken]:
    """Yield batches of at most ``max_`` events of ``stream`` (a faust stream).

    A batch is ready when it is full or when the stream's channel holds nothing more; it is then
    handed over once ``writer_free()`` returned (the previous batch was written), the events that
    arrive meanwhile joining it up to ``max_``. ``clock``: record each event's arrival time."""
    state: dict[str, Any] = {"events": [], "arrived": []}
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()
    queue_empty = stream.channel.queue.empty
    now = time.time

    async def wait_for_room(value: Any) -> Any:
        while len(state["events"]) >= max_ and not stream.should_stop:
            room.clear()
            await stream.wait(room)
        return value

    def add(value: Any) -> Any:
        """A stream processor (plain function: no coroutine per event unless the batch is full)."""
        events = state["events"]
        events.append(stream.current_event)
        if clock:
            state["arrived"].append(now())
        if len(events) >= max_:
            ready.set()
            return wait_for_room(value)
        if queue_empty():
            ready.set()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # as faust's own take does
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=within)
            if not state["events"]:
                ready.clear()
                continue
            if writer_free is not None:
                await writer_free()  # the batch keeps filling (up to max_) meanwhile
            taken = Taken(state["events"], state["arrived"])
            state["events"], state["arrived"] = [], []
            ready.clear()
            room.set()
            if clock:
                taken.handed = now()
            yield taken
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add)


def ack_all(stream: Any, events: list[Any]) -> None:
    """Acknowledge ``events`` (written): faust's ``Stream.ack`` for each, without a coroutine per
    event (the same steps its own iterator inlines)."""
    on_event_out, on_message_out = stream._on_stream_event_out, stream._on_message_out
    for event in events:
        last = event.ack()
        message = event.message
        on_event_out(message.tp, message.offset, stream, event)
        if last:
            on_message_out(message.tp, message.offset, message)
