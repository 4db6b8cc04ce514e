"""Settings of the processes: capture, the workers, the feed's fan-out, verify, the local stack
and read services."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from projectors.settings_base import Section, absolute_path, default_stack_dir, empty_is_unset, tcp_port


class CaptureSettings(Section):
    env_section: ClassVar[str] = "CAPTURE_"
    topic_prefix: str = Field(default="social", pattern=r"^[A-Za-z0-9_.-]+$")
    slot_name: str = Field(default="projectors_slot", pattern=r"^[a-z0-9_]{1,63}$")
    publication: str = Field(default="projectors_pub", pattern=r"^[a-z0-9_]{1,63}$")
    # the tables capture publishes, comma-separated; empty: every table a projection reads
    tables: str = ""
    heartbeat_interval_ms: int = Field(default=10_000, ge=0)
    # the modes Debezium 3.6 accepts (``never`` is gone: ``no_data``); `projectors config check` also
    # runs the connector's own validation of every property
    snapshot_mode: str = Field(default="initial", pattern=r"^(initial|no_data|when_needed|always|initial_only)$")
    state_dir: Path | None = None  # default: <stack dir>/capture; absolute
    offset_flush_interval_ms: int = Field(default=1_000, ge=0)
    max_batch_size: int = Field(default=2048, ge=1)
    # How long Debezium sleeps when the replication stream has nothing pending, and how long its
    # queue waits to fill a batch: Debezium's 500 ms default alone adds up to 1 s of lag.
    poll_interval_ms: int = Field(default=50, ge=1, le=60_000)
    # The largest record capture publishes (the producer's message.max.bytes): at most the broker's
    # message.max.bytes and the topics' max.message.bytes (Kafka's default 1 MB). A larger change is
    # published without its long column values (each replaced by Debezium's placeholder, the
    # envelope marked "projectorsShrunk"): the projections read the row from PostgreSQL anyway.
    max_message_bytes: int = Field(default=1_000_000, ge=16_384, le=100_000_000)
    # The compacted topic that holds capture's state (Debezium's offsets and the acknowledged
    # position), one record per capture keyed "<topic prefix>/<slot name>": a capture started with
    # an empty state directory resumes from it.
    state_topic: str = Field(default="projectors-capture-state", pattern=r"^[A-Za-z0-9_.-]+$")
    web_port: int = Field(default=0, ge=0, le=65535)  # /health and /metrics; 0: none
    # retained WAL (pg_current_wal_lsn() - restart_lsn) above which the ProjectorsCaptureWalRetained
    # alert fires (exported as projectors_capture_retained_wal_alert_bytes)
    wal_alert_bytes: int = Field(default=5 * 1024**3, ge=1)
    # Options for Debezium's JVM, space-separated, after the embedded engine's own (-Xms256m -Xmx2g
    # -XX:+UseG1GC; a later -Xmx wins): a heap that fits the container's memory limit, say. The
    # test suite sets -XX:TieredStopAtLevel=1 (the JIT's quick tier only: its short-lived captures
    # start on about 40% less CPU); a long-running capture keeps the full JIT.
    jvm_options: str = ""

    _unset_state_dir = field_validator("state_dir", mode="before")(empty_is_unset)
    _check_state_dir = field_validator("state_dir")(absolute_path)

    @field_validator("jvm_options")
    @classmethod
    def _options_only(cls, value: str) -> str:
        if bad := [word for word in value.split() if not word.startswith("-")]:
            raise ValueError(f"each JVM option starts with '-' (not {' '.join(bad)!r}), separated by spaces")
        return value

    @property
    def table_list(self) -> list[str]:
        return [t.strip() for t in self.tables.split(",") if t.strip()]

    @property
    def jvm_opts(self) -> list[str]:
        """The JVM's options: -Xrs (SIGTERM and SIGINT stay with Python, whose handler stops the
        engine with its offsets committed; the JVM would exit on them mid-batch), then ours."""
        return ["-Xrs", *self.jvm_options.split()]


class FeedSettings(Section):
    """The feed's hybrid fan-out: authors with at least ``celebrity_followers`` followers are not
    fanned out on write; their posts are stored once and merged into each follower's page on read."""

    env_section: ClassVar[str] = "FEED_"
    celebrity_followers: int = Field(default=1_000, ge=1)


class WorkerSettings(Section):
    """The projector workers (faust apps, one consumer group per projection)."""

    env_section: ClassVar[str] = "WORKER_"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # a batch is handed over when full or after this many seconds
    batch_within_s: float = Field(default=0.1, gt=0)
    # "natural": also as soon as the consumer holds no more events and no batch is being written
    # (a change alone is applied at once; what arrives during a write goes over when it ends);
    # "timer": only when full or after PROJECTORS_WORKER_BATCH_WITHIN_S. With two batches in flight
    # only; one batch at a time always waits for its timer.
    hand_over: Literal["natural", "timer"] = "natural"
    # How long a fetch may wait on the broker for data while events flow. Kafka answers as soon as
    # data arrives; some brokers (Tansu) hold every fetch this long, so it adds to each event's lag.
    # On Tansu 10 (with the idle wait at 100) cut publish -> taken from 32 to 9 ms p50 but more
    # than doubled the broker's CPU while events flow (10 -> 23% of a core for one agent at 200
    # events/s), and on a 2-core machine running the whole pipeline lag got worse: hence 100.
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=30_000)
    # With a shorter wait above: once no fetch brought records for this long, the wait doubles
    # after each empty fetch, up to this. So an idle worker fetches only this often (each empty
    # fetch costs about 0.5 ms of CPU in the worker and as much in the broker), and the first event
    # after a quiet spell waits up to this long. The same as the wait above or less: a fixed wait.
    fetch_idle_wait_ms: int = Field(default=100, ge=1, le=30_000)
    # Append each batch's per-change times to <stack dir>/run/clock (the bench's lag stages).
    clock: bool = False
    # A worker that stops heartbeating for this long leaves its group and its partitions move on.
    # Also how long a rebalance can wait for a member that left without saying so (and, on Tansu,
    # half of it is how long every JoinGroup waits). Heartbeats go every fifth of it.
    session_timeout_s: float = Field(default=10.0, ge=1.0, le=300.0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    dead_letter_prefix: str = Field(default="projectors.dlq", pattern=r"^[A-Za-z0-9_.-]+$")
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    web_port: int = Field(default=0, ge=0, le=65535)  # 0: no web server (health/metrics)
    # Batches a worker holds at once: 2 lets faust fill the next batch while the current one reads
    # PostgreSQL and writes the store (still applied one after the other, acknowledged in order,
    # each only once written); 1 fills a batch only after the previous one was written.
    batches_in_flight: int = Field(default=2, ge=1, le=2)
    # Where a worker's batches are projected (decode, source reads, store writes): "process", a child
    # process of its own, so faust's event loop and the projector each have a core and do not take
    # turns on one GIL; "thread", a thread of the worker's process (one core, or to debug in one
    # process). Delivery is the same either way: a batch is acknowledged only once applied.
    project_in: Literal["process", "thread"] = "process"
    # At start, how long a worker waits for capture's topics under PROJECTORS_CAPTURE_TOPIC_PREFIX
    # (none of them, nor capture's heartbeat topic, exists) before it stops with exit code 2 and
    # says so: a prefix that differs from capture's would otherwise consume nothing, silently.
    topics_wait_s: float = Field(default=120.0, ge=0)


class VerifySettings(Section):
    """`projectors verify`: how hard it may read the stores."""

    env_section: ClassVar[str] = "VERIFY_"
    # store items verify reads per second at most (whole-store pages and point reads alike), so a
    # check of a live store leaves its throughput to the workers; 0: unbounded
    read_budget_items_s: float = Field(default=0.0, ge=0)
    # request units per second the same reads may cost, where the store reports its charges (Cosmos:
    # x-ms-request-charge); 0: unbounded. Verify, repair and the check before a rebuild's swap all
    # read through these budgets.
    read_budget_ru_s: float = Field(default=0.0, ge=0)


class StackSettings(Section):
    """The local stack (``projectors stack``): where its processes keep data, pids and logs."""

    env_section: ClassVar[str] = "STACK_"
    # absolute; default: the project's .stack (see default_stack_dir), never the working directory's
    dir: Path = Field(default_factory=default_stack_dir)
    start_timeout_s: float = Field(default=60.0, gt=0)
    # worker processes per projection, e.g. "graph=2,feed=1" (unnamed projections run one): they share
    # the projection's partitions in its consumer group, so more than the topics' partitions idle
    workers: str = ""

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: str) -> str:
        from projectors.projections import DESCRIPTORS  # here: projections import the settings

        known = tuple(DESCRIPTORS)
        for item in filter(None, (i.strip() for i in value.split(","))):
            name, sep, count = item.partition("=")
            if not sep or name.strip() not in known or not count.strip().isdigit() or not 1 <= int(count) <= 256:
                raise ValueError(f"expected <projection>=<1..256>[,...] with a projection of {', '.join(known)}")
        return value

    @field_validator("dir", mode="before")
    @classmethod
    def _empty_dir(cls, value: object) -> object:
        return default_stack_dir() if value == "" else value  # ``PROJECTORS_STACK_DIR=``: the default
    _check_dir = field_validator("dir")(absolute_path)

    def worker_count(self, projection: str) -> int:
        counts = {
            name.strip(): int(count)
            for name, _, count in (i.partition("=") for i in self.workers.split(",") if i.strip())
        }
        return counts.get(projection, 1)


class ReadSettings(Section):
    """`ReadClient` (read services): how long a store may take, and the PostgreSQL fallback."""

    env_section: ClassVar[str] = "READ_"
    # a store read not answered within this bound is answered from PostgreSQL instead
    store_timeout_s: float = Field(default=2.0, gt=0, le=600)
    # answer from the projection's spec queries in PostgreSQL when its store does not answer
    fallback: bool = True
    # the fallback's own bound (connection and statement timeout)
    fallback_timeout_s: float = Field(default=5.0, gt=0, le=600)
    # a read given a writer's token (read-your-writes) waits at most this long for the projection
    wait_s: float = Field(default=10.0, gt=0, le=600)
    # answer from PostgreSQL while the projection is more than this many seconds behind its source
    # (0: never for that reason); measured in the background every max_behind_check_s, never on a
    # read's path (its consumer group's position and the time of the first record it has not applied)
    max_behind_s: float = Field(default=0.0, ge=0, le=86_400)
    max_behind_check_s: float = Field(default=5.0, gt=0, le=3_600)
    # the key that signs paging cursors (read/cursor.py); empty: derived from the Cosmos read key.
    # Every replica of a read service needs the same one, or a cursor from another replica is refused
    cursor_key: SecretStr = SecretStr("")
    # `projectors serve`: the address the HTTP read API (read/api.py) listens on
    api_host: str = "127.0.0.1"
    # `projectors serve`: the HTTP read API's port
    api_port: int = 58080
    # the largest page a read may ask for (feed, notifications, suggestions, search) and the most
    # subjects of one counters read
    max_limit: int = Field(default=500, ge=1, le=10_000)

    _check_api_port = field_validator("api_port")(tcp_port)
