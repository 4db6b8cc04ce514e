"""Checks made before the JVM starts, so a bad setting fails in a second with a clear message,
and a replication slot that vanished or was recreated is never followed silently."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from projectors.capture.connector import heartbeat_topic
from projectors.capture.wal import describe_keep_limit, wal_keep_limit
from projectors.db.migrate import connect, publication_tables
from projectors.errors import ConfigurationError, DataLossRisk
from projectors.model import table_topic
from projectors.projections import capture_tables
from projectors.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapturePosition:
    """What capture has published and the broker acknowledged: the highest LSN Debezium may flush
    to the slot. Written after every acknowledged batch, before Debezium commits its offsets."""

    slot: str
    lsn: int
    streaming: bool = False  # the snapshot completed and changes were streamed from the slot

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / "position.json"

    @classmethod
    def load(cls, state_dir: Path) -> CapturePosition | None:
        try:
            data = json.loads(cls.path(state_dir).read_text())
        except FileNotFoundError:
            return None
        return cls(slot=str(data["slot"]), lsn=int(data["lsn"]), streaming=bool(data.get("streaming", False)))

    def save(self, state_dir: Path) -> None:
        target = self.path(state_dir)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"slot": self.slot, "lsn": self.lsn, "lsn_text": format_lsn(self.lsn), "streaming": self.streaming}
            )
        )
        os.replace(tmp, target)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def check_database(settings: Settings) -> None:
    cap = settings.capture
    with connect(settings.pg) as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()
        if not wal_level or wal_level[0] != "logical":
            raise ConfigurationError(
                f"PostgreSQL at {settings.pg.host}:{settings.pg.port} has wal_level={wal_level and wal_level[0]}; "
                "logical decoding needs wal_level=logical (postgresql.conf, then restart)"
            )
        pub = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (cap.publication,)).fetchone()
        if not pub:
            raise ConfigurationError(
                f"publication {cap.publication!r} (PROJECTORS_CAPTURE_PUBLICATION) does not exist; "
                "run `projectors db migrate`"
            )
        published = set(publication_tables(conn, cap.publication))
        missing = [t for t in capture_tables(cap) if t not in published]
        if missing:
            raise ConfigurationError(
                f"table(s) {', '.join(missing)} in PROJECTORS_CAPTURE_TABLES are not in publication "
                f"{cap.publication!r} (it has: {', '.join(sorted(published)) or 'none'}); "
                "fix PROJECTORS_CAPTURE_TABLES or add them with `projectors db migrate`"
            )


def wait_for_slot_release(settings: Settings, wait_s: float = 15.0) -> None:
    """Wait (up to ``wait_s``) while the slot is read by another process: a capture that was killed
    or lost its lease leaves it active until the server notices. Before capture's state is read, so
    the state read is the one the previous capture published last."""
    deadline = time.monotonic() + wait_s
    with connect(settings.pg, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (settings.capture.slot_name,)
            ).fetchone()
            if row is None or not row[0]:
                return
            time.sleep(0.5)


def check_slot(settings: Settings, slot_release_wait_s: float = 15.0) -> None:
    """Refuse to go on when the slot that held our WAL position is gone or was recreated."""
    cap = settings.capture
    state = settings.capture_state_dir
    position = CapturePosition.load(state)
    has_history = (state / "offsets.dat").exists() or position is not None
    with connect(settings.pg, autocommit=True) as conn:
        # A capture that was killed leaves its slot active until the server notices the closed
        # connection: give it a few seconds before calling the slot busy.
        deadline = time.monotonic() + slot_release_wait_s
        while True:
            row = conn.execute(
                "SELECT database, plugin, active, active_pid, confirmed_flush_lsn::text, wal_status "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (cap.slot_name,),
            ).fetchone()
            if row is None or not row[2] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    recover = (
        "To recover, run `projectors capture --reset` (forgets capture's offsets and drops the slot), "
        "then start capture again: it takes a new snapshot of every table; the projections are "
        "idempotent, so re-reading rows already projected is safe."
    )
    if row is None:
        if has_history:
            where = f" up to LSN {format_lsn(position.lsn)}" if position else ""
            raise DataLossRisk(
                f"replication slot {cap.slot_name!r} no longer exists, but capture had published{where}. "
                "Changes made while the slot was missing are in no topic and would never be seen. " + recover
            )
        return
    database, plugin, active, active_pid, confirmed, wal_status = row
    if database != settings.pg.database or plugin != "pgoutput":
        raise ConfigurationError(
            f"replication slot {cap.slot_name!r} belongs to database {database!r} with plugin {plugin!r}; "
            "choose another PROJECTORS_CAPTURE_SLOT_NAME"
        )
    if active:
        raise ConfigurationError(
            f"replication slot {cap.slot_name!r} is in use by server process {active_pid}: is another "
            "capture running? (`projectors stack status`)"
        )
    if wal_status == "lost":
        raise DataLossRisk(
            f"replication slot {cap.slot_name!r} was invalidated by PostgreSQL (wal_status lost): it retained "
            "more WAL than max_slot_wal_keep_size allows while capture did not confirm positions, and the "
            "changes in that WAL are gone for capture. To recover, run `projectors capture --recover-slot` "
            "(a new slot at a new snapshot position, then every projection rebuilt from the source's state), "
            "then start capture again."
        )
    if has_history and position is not None and confirmed is not None and parse_lsn(confirmed) > position.lsn:
        raise DataLossRisk(
            f"replication slot {cap.slot_name!r} starts at {confirmed}, past the last position capture "
            f"published ({format_lsn(position.lsn)}): the slot was dropped and recreated while capture was "
            "stopped, and the changes in between are lost to it. " + recover
        )


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({**settings.kafka.client_config(), "socket.timeout.ms": 5000})


def require_broker(settings: Settings, timeout: float = 8.0, admin: AdminClient | None = None) -> set[str]:
    """The broker's topic names; a broker that does not answer is a configuration error that names
    the setting (instead of librdkafka's reconnect lines and a timeout deep inside a command)."""
    if admin is None:  # quiet: the error below says it all
        admin = AdminClient({**settings.kafka.client_config(), "socket.timeout.ms": 5000, "log_level": 2})
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise ConfigurationError(
            f"the Kafka broker at {settings.kafka.bootstrap_servers} (PROJECTORS_KAFKA_BOOTSTRAP_SERVERS) "
            f"does not answer: {exc.args[0]}; is it running? (`projectors stack status`)"
        ) from exc


def capture_topics(settings: Settings) -> dict[str, int]:
    prefix = settings.capture.topic_prefix
    topics = {table_topic(prefix, t): settings.kafka.topic_partitions for t in capture_tables(settings.capture)}
    topics[heartbeat_topic(prefix)] = 1
    return topics


def ensure_topics(settings: Settings, topics: dict[str, int], timeout: float = 8.0) -> list[str]:
    """Create missing topics; a broker that does not answer is a configuration error."""
    admin = admin_client(settings)
    existing = require_broker(settings, timeout, admin)
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=settings.kafka.replication_factor)
        for name, parts in topics.items()
        if name not in existing
    ]
    created = []
    if new:
        for name, future in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                future.result(timeout)
                created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigurationError(f"cannot create topic {name}: {exc}") from exc
    return created


def preflight(settings: Settings, restore: Callable[[], str] | None = None) -> None:
    """Check the database, create the topics, then ``restore`` capture's state (from the broker,
    see :mod:`projectors.capture.state_store`), then check the slot against that state."""
    settings.capture_state_dir.mkdir(parents=True, exist_ok=True)
    check_database(settings)
    with connect(settings.pg) as conn:
        log.info("%s", describe_keep_limit(wal_keep_limit(conn)))
    ensure_topics(settings, capture_topics(settings))
    if restore is not None:
        wait_for_slot_release(settings)
        log.info("%s", restore())
    check_slot(settings)
