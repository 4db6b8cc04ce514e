"""How far behind its source each projection a read client reads is, measured in the background."""

from __future__ import annotations

import logging
import threading

from projectors.settings import Settings

log = logging.getLogger(__name__)


class Freshness:
    """How many seconds each projection a client reads is behind its source, measured by a daemon
    thread every ``every_s`` (its consumer group's committed position against the topics: no store
    read), so that no read waits for it. Unknown (None) until first measured, and again while the
    broker does not answer: an unknown lag never sends a read to PostgreSQL."""

    def __init__(self, settings: Settings, every_s: float) -> None:
        self.settings = settings
        self.every_s = every_s
        self._behind: dict[str, float] = {}
        self._wanted: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def behind_s(self, projection: str) -> float | None:
        with self._lock:
            self._wanted.add(projection)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-freshness", daemon=True)
                self._thread.start()
        return self._behind.get(projection)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from projectors.operations.status import seconds_behind

        consumer = Consumer({**self.settings.kafka.client_config(), "group.id": "projectors-read-freshness",
                             "enable.auto.commit": False})
        try:
            while not self._stop.is_set():
                for name in sorted(self._wanted):
                    try:
                        self._behind[name] = seconds_behind(self.settings, name, consumer)
                    except Exception as exc:  # the broker does not answer: unknown
                        log.debug("freshness of %s unknown: %s", name, exc)
                        self._behind.pop(name, None)
                self._stop.wait(self.every_s)
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
