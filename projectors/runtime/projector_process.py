"""The batch projector in a child process of its own (``PROJECTORS_WORKER_PROJECT_IN=process``).

A worker's process runs faust: its event loop fetches, decodes the records' framing and tracks
every event's acknowledgement, about 165 µs of CPU per event, all of it under the GIL. The
projector's own work (decode and validate, the touched items, the source reads, the store
client) is another 35-40 µs per event. In one process the two share one core through the GIL, and
the batch thread waits for the GIL after every PostgreSQL round trip while the loop holds it. Here
the :class:`~projectors.runtime.batch.BatchProjector` runs in a child process with its own
interpreter: the loop keeps a core for faust, the projector works on another, and only the raw
records (bytes) cross, one pickled batch at a time, over a pipe.

Nothing about delivery changes: the parent hands the child one batch at a time and acknowledges it
only when the child answered that the batch was applied and its dead letters flushed. A batch the
child could not apply comes back as a :class:`ProjectorProcessError` carrying the error's severity,
and the worker exits without committing, exactly as with a batch thread. The child dies with its
parent (``PR_SET_PDEATHSIG``): a worker killed mid-batch leaves nothing running. It ignores SIGINT
and takes SIGTERM as "stop" (retries end, the batch in flight raises), which the parent sends it
when it is stopped itself.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import NamedTuple

from projectors.errors import ConfigurationError, ProjectorsError, Severity, severity
from projectors.model import ProjectionStore, RequestSnapshot
from projectors.runtime.batch import BatchStats
from projectors.runtime.dead_letters import RawRecord
from projectors.runtime.projector_build import build_projector, quiet_clients, tune_gc
from projectors.runtime.retry import RetryingStore
from projectors.runtime.stats import store_requests
from projectors.settings import Settings
from projectors.source import SourceCounts

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 120.0  # the child builds the projector: opens the store, ensures its schema


class ProjectorProcessError(ProjectorsError):
    """A batch (or the start) failed in the child process; ``severity`` is the original error's."""

    def __init__(self, message: str, severity: Severity = Severity.RETRIABLE) -> None:
        super().__init__(message)
        self.severity = severity


@dataclass
class Report:
    """What the child tells the parent after each batch (or failure): its running totals."""

    stats: BatchStats
    source_counts: SourceCounts
    store_requests: dict[str, float]
    store_retries: int
    store_healthy: bool


@dataclass
class Failure:
    severity: Severity
    kind: str
    message: str
    trace: str
    report: Report | None = None


@dataclass
class StoreView:
    """The parent's view of the child's store: what readiness and the metrics read."""

    ping: Callable[[], bool]
    healthy: bool = True
    retries: int = 0
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> RequestSnapshot:
        """The child's store's request counts, as of its last report (a :class:`CountsRequests`)."""
        return Counts(dict(self.counts))


class Counts(NamedTuple):
    counts: dict[str, float]

    def snapshot(self) -> Mapping[str, float]:
        return self.counts


class ProjectionName:
    def __init__(self, name: str) -> None:
        self.name = name


class ProjectorProcess:
    """A :class:`~projectors.runtime.batch.BatchProjector` in a child process, seen by the worker
    through the same attributes (``process``, ``stats``, ``source_counts``, ``store``, ``stop``)."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        store_factory: Callable[[], ProjectionStore] | None = None,
        loglevel: int = logging.INFO,
    ) -> None:
        self.projection = ProjectionName(name)
        self.stats = BatchStats()
        self.source_counts = SourceCounts()
        self.store = StoreView(self._ping)
        self._stopping = False
        self._control_lock = threading.Lock()
        context = multiprocessing.get_context("spawn")  # the parent may already run threads
        self._batches, child_batches = context.Pipe()
        self._control, child_control = context.Pipe()
        self._child = context.Process(
            target=child_main,
            args=(child_batches, child_control, settings, name, store_factory, loglevel),
            name=f"projector-{name}",
            daemon=True,
        )
        self._child.start()
        atexit.register(self.close)  # before multiprocessing's own exit handler, which would join it
        child_batches.close()
        child_control.close()
        if not self._batches.poll(START_TIMEOUT_S):
            self._child.kill()
            raise ProjectorProcessError(f"the projector process did not start in {START_TIMEOUT_S:.0f}s")
        started = self._receive()
        if isinstance(started, Failure):
            self._child.join(5)
            if started.severity is Severity.CONFIGURATION:
                raise ConfigurationError(started.message)
            raise ProjectorProcessError(f"{started.kind}: {started.message}", started.severity)

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Tell the child to stop: its retries end and the batch in flight fails, unacknowledged."""
        self._stopping = True
        if self._child.pid is not None and self._child.is_alive():
            os.kill(self._child.pid, signal.SIGTERM)

    def process(self, records: Sequence[RawRecord]) -> None:
        """Apply ``records`` in the child; returns once they were applied (see BatchProjector.process)."""
        try:
            self._batches.send([tuple(r) for r in records])  # plain tuples pickle several times faster
        except (OSError, ValueError) as exc:
            raise ProjectorProcessError(f"the projector process is gone ({exc})") from None
        answer = self._receive()
        if isinstance(answer, Failure):
            if answer.report is not None:
                self._take(answer.report)
            log.error("batch failed in the projector process:\n%s", answer.trace.rstrip())
            raise ProjectorProcessError(f"{answer.kind}: {answer.message}", answer.severity)
        self._take(answer)

    def _receive(self) -> Report | Failure:
        try:
            answer: Report | Failure = self._batches.recv()
        except (EOFError, OSError):
            code = self._child.exitcode
            raise ProjectorProcessError(f"the projector process exited (code {code})") from None
        return answer

    def _take(self, report: Report) -> None:
        self.stats = report.stats
        self.source_counts = report.source_counts
        self.store.counts = report.store_requests
        self.store.retries = report.store_retries
        self.store.healthy = report.store_healthy

    def _ping(self) -> bool:
        with self._control_lock:
            try:
                self._control.send("ping")
                if not self._control.poll(30):
                    return False
                return bool(self._control.recv())
            except (EOFError, OSError):
                return False

    def close(self) -> None:
        """End the child once it finished its batch (the pipe's end tells it), or kill it after 10 s."""
        if self._child.exitcode is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._batches.send(None)
        self._child.join(10)
        if self._child.is_alive():
            self._child.kill()


# -- the child's side -------------------------------------------------------------------------------
def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send this process ``signum`` when its parent dies (a worker killed mid-batch)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):  # not Linux: the pipe's EOF ends the child instead
        pass
    if os.getppid() == 1:  # the parent died before the prctl
        os._exit(1)


def child_main(
    batches: Connection,
    control: Connection,
    settings: Settings,
    name: str,
    store_factory: Callable[[], ProjectionStore] | None,
    loglevel: int,
) -> None:

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the parent, which stops us
    logging.basicConfig(level=loglevel, format=f"[projector-{name} %(process)d] %(levelname)s %(name)s: %(message)s")
    quiet_clients()
    try:
        projector = build_projector(settings, name, store_factory() if store_factory else None)
    except Exception as exc:
        batches.send(Failure(severity(exc), type(exc).__name__, str(exc), traceback.format_exc()))
        return
    signal.signal(signal.SIGTERM, lambda _s, _f: projector.stop())

    def report() -> Report:
        store = projector.store
        retries, healthy = (store.retries, store.healthy) if isinstance(store, RetryingStore) else (0, True)
        return Report(projector.stats, projector.source_counts, store_requests(projector), retries, healthy)

    def serve_control() -> None:
        while True:
            try:
                control.recv()
            except (EOFError, OSError):
                return
            try:
                up = projector.store.ping()
            except Exception:
                up = False
            control.send(up)

    threading.Thread(target=serve_control, name="control", daemon=True).start()
    tune_gc()
    batches.send(report())
    while True:
        try:
            records = batches.recv()
        except (EOFError, OSError):
            break
        if records is None:
            break
        try:
            projector.process([RawRecord._make(r) for r in records])
        except Exception as exc:
            batches.send(Failure(severity(exc), type(exc).__name__, str(exc), traceback.format_exc(), report()))
            continue
        batches.send(report())
    projector.close()
