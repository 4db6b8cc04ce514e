"""`projectors worker <projection>`: a faust-streaming worker for one projection.

One faust app (consumer group ``projectors-<projection>``) per projection; run several workers of a
projection and they share its partitions. The agent takes batches of events and hands each, from a
thread, to the projector: a :class:`BatchProjector` in a child process
(:mod:`projectors.runtime.projector_process`, the default) or in that thread
(``PROJECTORS_WORKER_PROJECT_IN``). A batch's offsets are acknowledged only after ``process``
returned, i.e. after the store applied it and the dead letters were flushed, and faust commits
acknowledged offsets every ``commit_interval_s``. Two ways to take them
(``PROJECTORS_WORKER_BATCHES_IN_FLIGHT``):

- 2 (the default): batches taken unacknowledged (``runtime/take.py``: faust's ``noack_take``,
  which also hands a batch over as soon as the consumer holds nothing more, with
  ``PROJECTORS_WORKER_HAND_OVER=natural``); each batch is written by a task of its own, which
  acknowledges its events, in order, once written. The next batch is handed over only after the
  previous one was written (batches are applied one after the other) while faust fills the one after;
- 1: ``take_events``, one batch at a time, acknowledged when the agent takes the next one.

faust pitfall avoided: ``take_events`` acknowledges its buffered events when the agent is cancelled
(shutdown) even if they were not written. On SIGTERM mid-batch the worker waits up to
``shutdown_grace_s`` for the batch to finish; if it cannot (the store is down), the process exits at
once without committing, exactly like a crash: the batch is redelivered to the next worker. A
watchdog armed by the signal bounds the whole shutdown by the same grace (faust's own wait for
in-flight events has no bound).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from projectors.model import ProjectionStore
from projectors.projections import descriptor
from projectors.runtime.batch import Projector
from projectors.runtime.clock import BatchClock, clock_path
from projectors.runtime.projector_build import build_projector, quiet_clients, tune_gc
from projectors.runtime.projector_process import ProjectorProcess
from projectors.runtime.worker_parts import BatchGuard, BatchReport, abandon, add_agent, batch_writer, faust_app
from projectors.settings import Settings

log = logging.getLogger(__name__)


def build_app(
    settings: Settings, name: str, projector: Projector, group: str | None = None, client_id: str | None = None
) -> Any:
    """The faust app of one worker, from its parts (``worker_parts.py``): the app and its topic,
    the report after each batch, the guard of a batch in flight, the agent."""
    app, source = faust_app(settings, name, group, client_id)
    report = BatchReport(settings, name, projector, app)
    guard = BatchGuard(projector, settings.worker.shutdown_grace_s)
    clock = BatchClock(clock_path(settings, name)) if settings.worker.clock else None
    add_agent(app, source, name, settings, batch_writer(report, clock), guard, clocked=clock is not None)
    return app


def shutdown_watchdog(grace_s: float) -> threading.Timer:
    """Armed by SIGTERM/SIGINT: faust first waits, without a bound, for every event taken to be
    acknowledged (``stream_wait_empty``), so a batch stuck on a store that is down or slow would hold
    the shutdown forever. The watchdog keeps the promise of ``shutdown_grace_s``."""
    timer = threading.Timer(
        grace_s, abandon, (f"still running {grace_s:.0f}s after the stop signal (PROJECTORS_WORKER_SHUTDOWN_GRACE_S)",)
    )
    timer.daemon = True
    return timer


def run_worker(
    settings: Settings,
    name: str,
    loglevel: str = "info",
    store_factory: Callable[[], ProjectionStore] | None = None,
    group: str | None = None,
    client_id: str | None = None,
) -> None:
    """Run a worker until stopped (``store_factory``, ``group``: benchmarks run a null store and
    groups of their own; the factory is called in the projector's process, so it must pickle:
    a class or a module-level function)."""
    import faust

    projector: Projector
    if settings.worker.project_in == "process":
        level = logging.getLevelName(loglevel.upper())
        projector = ProjectorProcess(settings, name, store_factory, level if isinstance(level, int) else logging.INFO)
    else:
        projector = build_projector(settings, name, store_factory() if store_factory else None)
    app = build_app(settings, name, projector, group, client_id)
    log.info(
        "worker for projection %s: group %s, topics %s",
        name,
        group or descriptor(name).group,
        ", ".join(descriptor(name).topics(settings)),
    )
    watchdog = shutdown_watchdog(settings.worker.shutdown_grace_s)

    class Worker(faust.Worker):  # type: ignore[misc]
        def _on_sigterm(self) -> None:
            if not watchdog.is_alive():
                watchdog.start()
            projector.stop()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            if not watchdog.is_alive():
                watchdog.start()
            projector.stop()
            super()._on_sigint()

    worker = Worker(app, loglevel=loglevel, quiet=True)
    tune_gc()
    quiet_clients()
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
