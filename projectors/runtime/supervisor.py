"""`projectors worker <projection>`: the faust worker, run and paused through the control topic.

This process follows the projection's state on the control topic (``runtime/control.py``). While
the projection runs, it runs the faust worker (``runtime/worker.py``) as a child process; paused,
it stops that child the way SIGTERM stops a worker (the batch in flight is written, its offsets
committed, the consumer group left), stays alive and serves ``/health`` and ``/metrics`` itself with
``"state": "paused"`` and ``projectors_paused 1``. A worker that starts while its projection is
paused starts paused. A child that exits by itself (a crash, a configuration error) ends this
process with its exit code, as before; SIGTERM and SIGINT are passed on to the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

from projectors.capture.connector import heartbeat_topic
from projectors.errors import ConfigurationError
from projectors.projections import descriptor
from projectors.runtime.control import ControlState, ControlWatcher, acknowledge
from projectors.runtime.observe import HealthServer, Metrics
from projectors.settings import Settings

log = logging.getLogger(__name__)


def client_id(projection: str) -> str:
    """What the group's description shows for this worker: projection, host and pid."""
    return f"projectors-{projection}@{socket.gethostname()}:{os.getpid()}"


class Supervisor:
    def __init__(self, settings: Settings, projection: str, verbose: bool = False) -> None:
        self.settings, self.projection, self.verbose = settings, projection, verbose
        self.wake = threading.Event()
        self.stopping: int | None = None  # the signal that asked this process to stop
        self.child: subprocess.Popen[bytes] | None = None
        self.paused_server: HealthServer | None = None
        self.client_id = client_id(projection)
        self.acknowledged = ""  # the last pause request acknowledged
        self.watcher = ControlWatcher(settings, projection, lambda _state: self.wake.set())

    def _signalled(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = signum
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signum)
        self.wake.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signalled)
        signal.signal(signal.SIGINT, self._signalled)
        state = self.watcher.start()
        if state.paused:
            log.info("projection %s is paused (by %s at %s): starting paused", self.projection, state.by, state.at)
            self._serve_paused()
        try:
            while True:
                if self.stopping is not None:
                    return self._wait_child() if self.child is not None else 0
                state = self.watcher.state
                if self.child is not None and self.child.poll() is not None:
                    code = self.child.returncode
                    log.error("the worker of %s exited with code %s", self.projection, code)
                    return code if code >= 0 else 128 - code
                if state.paused and self.child is not None:
                    self._pause(state)
                elif not state.paused and self.child is None:
                    self._resume(state)
                if state.paused and self.child is None and state.request != self.acknowledged:
                    try:
                        acknowledge(self.settings, self.client_id, state)
                        self.acknowledged = state.request
                    except Exception as exc:  # the broker away: try again on the next turn
                        log.warning("projection %s: cannot acknowledge the pause yet (%s)", self.projection, exc)
                self.wake.wait(0.5)
                self.wake.clear()
        finally:
            self.watcher.stop()
            if self.paused_server is not None:
                self.paused_server.stop()

    def _start_child(self) -> None:
        command = [sys.executable, "-m", "projectors.cli", *(["-v"] if self.verbose else []),
                   "worker", self.projection, "--no-control", "--client-id", self.client_id]
        self.child = subprocess.Popen(command)

    def _wait_child(self) -> int:
        assert self.child is not None
        limit = self.settings.worker.shutdown_grace_s + 30.0
        try:
            code = self.child.wait(limit)
        except subprocess.TimeoutExpired:
            log.error("the worker of %s still runs %.0fs after the stop signal: killing it", self.projection, limit)
            self.child.kill()
            code = self.child.wait()
        self.child = None
        return code if code >= 0 else 128 - code

    def _pause(self, state: ControlState) -> None:
        log.info("projection %s paused by %s at %s (request %s): stopping the worker",
                 self.projection, state.by, state.at, state.request)
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signal.SIGTERM)
        code = self._wait_child()
        log.info("projection %s: paused (the worker left its group, exit code %s)", self.projection, code)
        self._serve_paused()

    def _resume(self, state: ControlState) -> None:
        if self.paused_server is not None:
            log.info("projection %s resumed by %s at %s: starting the worker", self.projection, state.by, state.at)
            self.paused_server.stop()
            self.paused_server = None
        self._start_child()

    def _serve_paused(self) -> None:
        port = self.settings.worker.web_port
        if port <= 0:
            return
        metrics = Metrics(self.projection)
        metrics.paused.labels(self.projection).set(1)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                server = HealthServer(port, metrics, lambda: {"paused": True}, state="paused")
                break
            except OSError:  # the child's server is still closing
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        server.start()
        self.paused_server = server


def wait_for_topics(settings: Settings, projection: str) -> None:
    """Wait until capture publishes under this worker's topic prefix: one of the projection's topics
    or capture's heartbeat topic exists (an empty table's topic may appear only with its first
    change). :class:`ConfigurationError` after ``PROJECTORS_WORKER_TOPICS_WAIT_S``, naming the
    prefixes found instead."""
    from projectors.capture.preflight import require_broker

    prefix = settings.capture.topic_prefix
    topics = descriptor(projection).topics(settings)
    wanted = {*topics, heartbeat_topic(prefix)}
    deadline = time.monotonic() + settings.worker.topics_wait_s
    said = False
    while True:
        existing = require_broker(settings, 15.0)
        if wanted & existing:
            return
        if time.monotonic() >= deadline:
            tables = {t.split(".", 1)[1] for t in topics}
            others = sorted({t.split(".", 1)[0] for t in existing if "." in t and t.split(".", 1)[1] in tables})
            found = (f"topics of these tables exist under the prefix(es) {', '.join(others)}"
                     if others else "no topic of these tables exists under any prefix: is capture running?")
            raise ConfigurationError(
                f"worker {projection}: none of its topics exist after {settings.worker.topics_wait_s:.0f}s "
                f"({', '.join(sorted(topics))}) and capture's heartbeat topic {heartbeat_topic(prefix)} neither; "
                f"{found}. PROJECTORS_CAPTURE_TOPIC_PREFIX={prefix} must be capture's prefix "
                "(the connector takes it from the same setting)"
            )
        if not said:
            log.warning("worker %s: waiting up to %.0fs for capture's topics under the prefix %r",
                        projection, settings.worker.topics_wait_s, prefix)
            said = True
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def supervise(settings: Settings, projection: str, verbose: bool = False) -> int:
    """Run the worker of ``projection`` under the control topic until stopped; its exit code."""
    wait_for_topics(settings, projection)
    return Supervisor(settings, projection, verbose).run()
