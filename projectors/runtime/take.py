"""Natural batching: a worker's next batch is whatever arrived while the previous one was written.

faust's ``noack_take(n, within)`` hands a batch over when it holds ``n`` events or when ``within``
seconds passed since the last hand-over: at a low rate each event waits for that timer (half of
``within`` on average), and an idle worker wakes up every ``within``. :class:`NaturalTake` buffers
the stream's events the same way (a processor on the stream, consumed passively, faust's own acks
off) but hands the buffer over as soon as it holds anything and the writer is free: one event at a
time when the pipeline is quiet, larger batches by themselves under load (what arrived while the
previous batch was written), at most ``max_events``, and no timer at all when idle.

Acknowledgement stays with the caller: nothing here acks an event. Events still buffered when the
worker stops were never handed over, so never acknowledged: the group redelivers them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


class NaturalTake:
    """The buffer of one agent's stream (see the module's docstring)."""

    def __init__(self, stream: Any, max_events: int, stamped: bool = False) -> None:
        self.stream, self.max_events, self.stamped = stream, max_events, stamped
        self.buffer: list[Any] = []
        self.arrived: list[float] = []  # when ``stamped``: when each buffered event came in
        self.some = asyncio.Event()  # set while the buffer holds an event
        self.room = asyncio.Event()  # set while the buffer is not full
        self.room.set()
        self._acks_were: bool | None = None

    async def _add(self, value: Any) -> Any:
        """The stream's processor: one event in (the stream's iteration waits here while full)."""
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("the take buffer found no current event")
        if len(self.buffer) >= self.max_events:
            self.room.clear()
            await self.stream.wait(self.room)  # until taken (or the stream stops)
        self.buffer.append(event)
        if self.stamped:
            self.arrived.append(time.time())
        self.some.set()
        return value

    def start(self) -> None:
        """Take the stream's events from now on (faust's acks off: the caller acknowledges)."""
        stream = self.stream
        self._acks_were = stream.enable_acks
        stream.enable_acks = False
        stream.add_processor(self._add)
        stream._enable_passive(aiter(stream.channel))

    def stop(self) -> None:
        if self._acks_were is not None:
            self.stream.enable_acks = self._acks_were
            self.stream._processors.remove(self._add)
            self._acks_were = None

    async def wait(self) -> bool:
        """Until the buffer holds an event (True) or the stream stops (False)."""
        await self.stream.wait_for_stopped(self.some)
        return bool(self.buffer)

    def take(self) -> tuple[list[Any], list[float]]:
        """Everything buffered, in arrival order (and when each came in, if stamped); the buffer
        starts empty again."""
        events, self.buffer = self.buffer, []
        arrived, self.arrived = self.arrived, []
        self.some.clear()
        self.room.set()
        return events, arrived
