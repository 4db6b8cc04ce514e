"""Baselines for the benchmarks: how fast the same topics are read with no projection at all.

* :func:`bare_consume`: a confluent-kafka consumer on manually assigned partitions, from the
  beginning, that only counts messages (the ceiling of the client library on this broker);
* :func:`bare_faust`: a faust-streaming app, built like the projector workers
  (:mod:`projectors.runtime.worker`: same broker URL and credentials, ``take_events`` batches),
  whose agent only counts events (the ceiling of the faust runtime), run in a child process.

Neither reads "up to the end": the local broker's high watermark is short after batched produce. Both stop
after ``expected`` events, or when nothing new came for ``idle_s``. Timing starts when the first
fetch (or batch) arrives; the events of that first fetch arrived at time zero, so they are counted
in :attr:`Rate.events` but not in :attr:`Rate.per_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from projectors.capture.preflight import admin_client
from projectors.settings import ENV_PREFIX, Settings, load_settings, settings_to_env

FETCH_MESSAGES = 10_000
POLL_S = 0.2


@dataclass(frozen=True)
class Rate:
    """``events`` counted in ``seconds``, from the first fetch to the last event counted;
    ``warmup_events`` came with the first fetch (at time zero)."""

    events: int
    seconds: float
    warmup_events: int = 0
    cpu_seconds: float = 0.0  # the counting process's CPU over the same span (0: not measured)

    @property
    def cpu_us_per_event(self) -> float:
        counted = self.events - self.warmup_events
        return self.cpu_seconds / counted * 1e6 if counted > 0 and self.cpu_seconds else 0.0

    @property
    def per_s(self) -> float:
        """Events per second after the first fetch; 0.0 when everything came in one fetch (too few
        events to time)."""
        if self.seconds <= 0:
            return 0.0
        return (self.events - self.warmup_events) / self.seconds


def _partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    meta = admin_client(settings).list_topics(timeout=10)
    missing = [t for t in topics if t not in meta.topics]
    if missing:
        raise ValueError(f"no such topic on {settings.kafka.bootstrap_servers}: {', '.join(missing)}")
    return [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in sorted(meta.topics[t].partitions)]


def bare_consume(
    settings: Settings, topics: list[str], expected: int, idle_s: float = 5.0, *, start_timeout_s: float = 30.0
) -> Rate:
    """Count the messages of ``topics`` from the beginning (every partition assigned, no group
    membership, no commits, no decoding) until ``expected`` were counted, or none came for
    ``idle_s`` after the first (or for ``start_timeout_s`` before it)."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"projectors-bench-bare-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    count, warmup = 0, 0
    first: float | None = None
    last = started = time.monotonic()
    try:
        consumer.assign(_partitions(settings, topics))
        while count < expected:
            batch = consumer.consume(num_messages=FETCH_MESSAGES, timeout=POLL_S)
            now = time.monotonic()
            got = sum(1 for message in batch if message.error() is None)
            if got:
                if first is None:
                    first, warmup = now, got
                count += got
                last = now
            elif now - (started if first is None else last) > (start_timeout_s if first is None else idle_s):
                break
    finally:
        consumer.close()
    return Rate(count, 0.0 if first is None else last - first, warmup)


# -- the faust baseline ----------------------------------------------------------------------------
def bare_faust(settings: Settings, topics: list[str], expected: int, timeout_s: float, *, idle_s: float = 5.0) -> Rate:
    """Count the events of ``topics`` with a faust agent in a child process (a fresh consumer group
    reading from the earliest offsets) until ``expected`` were counted, none came for ``idle_s``
    after the first, or ``timeout_s`` passed (then: what was counted so far). Raises RuntimeError
    if the child reported nothing."""
    with tempfile.TemporaryDirectory(prefix="projectors-bench-faust-") as tmp:
        out, log = Path(tmp) / "rate.json", Path(tmp) / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(settings_to_env(settings))
        argv = [sys.executable, "-m", "projectors.bench.baselines", "faust", "--out", str(out)]
        argv += ["--expected", str(expected), "--idle", str(idle_s), "--datadir", tmp, *topics]
        with log.open("wb") as log_file:
            child = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline and child.poll() is None:
                    report = _read_report(out)
                    if report is not None and report["done"]:
                        break
                    time.sleep(POLL_S)
            finally:
                _stop(child)
        report = _read_report(out)
        if report is None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the faust baseline reported nothing (exit {child.returncode}):\n{tail}")
        return Rate(int(report["events"]), float(report["seconds"]), int(report["warmupEvents"]),
                    float(report.get("cpuSeconds", 0.0)))


def _stop(child: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` (a faust worker's LeaveGroup can hang on the local
    broker)."""
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


class Tally:
    """The counting agent's totals, published (atomically) to a JSON file for the parent."""

    def __init__(self, expected: int, idle_s: float, out: Path) -> None:
        self.expected, self.idle_s, self.out = expected, idle_s, out
        self.events = self.warmup = 0
        self.first: float | None = None
        self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.done = False

    def add(self, n: int) -> None:
        now, cpu = time.monotonic(), time.process_time()
        if self.first is None:
            self.first, self.warmup, self.cpu_first = now, n, cpu
        self.events += n
        self.last, self.cpu_last = now, cpu
        if self.events >= self.expected:
            self.done = True

    def check_idle(self) -> None:
        if self.first is not None and time.monotonic() - self.last > self.idle_s:
            self.done = True

    def publish(self) -> None:
        seconds = 0.0 if self.first is None else self.last - self.first
        data = {"events": self.events, "seconds": seconds, "warmupEvents": self.warmup, "done": self.done,
                "cpuSeconds": self.cpu_last - self.cpu_first}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.out)


def run_faust_counter(
    settings: Settings, topics: list[str], expected: int, idle_s: float, out: Path, datadir: Path
) -> None:
    """The child's side of :func:`bare_faust`: a faust worker whose agent only counts; it publishes
    its totals every second and when done, then stops itself (SIGTERM). It runs with the workers'
    runtime settings (app class with their fetch wait, their GC thresholds), so the ratio against
    it measures the projectors' own work, not a difference in tuning."""
    import faust

    from projectors.runtime.faust_app import app_class
    from projectors.runtime.projector_build import tune_gc
    from projectors.runtime.worker_parts import faust_credentials

    app = app_class(settings.worker.fetch_max_wait_ms, settings.worker.fetch_idle_wait_ms)(
        f"projectors-bench-faust-{uuid.uuid4().hex[:8]}",
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka.bootstrap_servers.split(",")),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_commit_interval=settings.worker.commit_interval_s,
        # The local broker answers a new group's JoinGroup only after half the session timeout
        # (measured: 30 s with faust's default of 60 s, 5 s with 10 s); it does not change the rate.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        stream_wait_empty=True,
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    tally = Tally(expected, idle_s, out)
    tally.publish()
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s

    def finish() -> None:
        tally.publish()
        signal.raise_signal(signal.SIGTERM)

    @app.agent(source, name="count")  # type: ignore[untyped-decorator]
    async def count(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=within):
            if tally.done:
                continue
            tally.add(len(events))
            if tally.done:
                finish()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        if tally.done:
            return
        tally.check_idle()
        if tally.done:
            finish()
        else:
            tally.publish()

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    tune_gc()
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projectors.bench.baselines")
    commands = parser.add_subparsers(dest="command", required=True)
    faust_cmd = commands.add_parser("faust", help="count events with a bare faust agent (the child of bare_faust)")
    faust_cmd.add_argument("--out", type=Path, required=True, help="JSON file the totals are written to")
    faust_cmd.add_argument("--expected", type=int, required=True)
    faust_cmd.add_argument("--idle", type=float, default=5.0)
    faust_cmd.add_argument("--datadir", type=Path, required=True)
    faust_cmd.add_argument("topics", nargs="+")
    args = parser.parse_args(argv)
    run_faust_counter(load_settings(), args.topics, args.expected, args.idle, args.out, args.datadir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
