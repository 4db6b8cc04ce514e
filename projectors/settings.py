"""Typed settings, read once from the environment and validated at start-up.

Every setting is an environment variable named ``PROJECTORS_<SECTION>_<FIELD>``; a secret may
instead be given as a file path in ``<NAME>_FILE`` (Docker and Kubernetes secrets). A bad value
stops the process with a message that names the variable (:class:`SettingsError`).
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "PROJECTORS_"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class Section(BaseModel):
    """A group of settings sharing one environment prefix."""

    # durations and sizes are finite numbers: "inf" or "nan" is a bad setting, named at start
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    env_section: ClassVar[str] = ""

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{ENV_PREFIX}{cls.env_section}{field}".upper()

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Any:
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            var = cls.env_name(name)
            if var in environ:
                values[name] = environ[var]
            elif environ.get(f"{var}_FILE"):  # ``NAME_FILE=`` (empty, as in an env file): not given
                path = Path(environ[f"{var}_FILE"])
                try:
                    values[name] = path.read_text().strip()
                except OSError as exc:
                    raise SettingsError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from exc
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                shown = "<secret>" if "password" in field or "key" in field else err.get("input")
                problems.append(f"{cls.env_name(field)}={shown!r}: {err['msg']}")
            raise SettingsError("invalid setting " + "; ".join(problems)) from None


def _absolute(value: Path | None) -> Path | None:
    """A data path is absolute (``~`` is expanded): a relative one would name another folder in
    each working directory, and every process of the stack (a worker, a read service, an operator
    tool run from elsewhere) must find the same files."""
    if value is None:
        return None
    value = value.expanduser()
    if not value.is_absolute():
        raise ValueError("expected an absolute path (a relative one depends on the working directory)")
    return value


def _empty_is_unset(value: object) -> object:
    """An empty value (``NAME=`` in an env file) leaves an optional path unset."""
    return None if value == "" else value


def default_stack_dir() -> Path:
    """The project's ``.stack`` folder: in the source checkout this package runs from (where
    ``./scripts/setup`` put the virtualenv), whatever the working directory. A package installed
    without its checkout uses ``~/.local/share/projectors/stack``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "scripts" / "setup").is_file():
        return checkout / ".stack"
    return Path.home() / ".local" / "share" / "projectors" / "stack"


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port is a number from 1 to 65535")
    return value


class PostgresSettings(Section):
    env_section: ClassVar[str] = "PG_"
    host: str = "127.0.0.1"
    port: int = 55432
    user: str = "postgres"
    password: SecretStr = SecretStr("projectors")
    database: str = "social"
    # libpq's sslmode, for the projectors' connections and capture's (Debezium database.sslmode);
    # production: require, or verify-full with the server's CA
    sslmode: str = Field(default="prefer", pattern=r"^(disable|allow|prefer|require|verify-ca|verify-full)$")
    # TLS files (PEM), for every connection (capture, workers, operations, readers): the CA that signed
    # the server's certificate (libpq reads no system trust store: verify-ca/verify-full need it), and
    # a client certificate and key where the server asks for one. Empty: none.
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None

    _check_port = field_validator("port")(_port)

    @field_validator("sslrootcert", "sslcert", "sslkey", mode="before")
    @classmethod
    def _tls_file(cls, value: object) -> object:
        if value in ("", None):
            return None
        if not Path(str(value)).is_file():
            raise ValueError(f"no such file: {value}")
        return Path(str(value)).absolute()

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string, each value quoted by libpq's rules (a password with spaces,
        quotes or ``=`` is one value, never more keys)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password.get_secret_value(),
            dbname=database or self.database, connect_timeout=5, sslmode=self.sslmode,
            **{k: str(v) for k, v in (("sslrootcert", self.sslrootcert), ("sslcert", self.sslcert),
                                      ("sslkey", self.sslkey)) if v is not None},
        )


KAFKA_LOGGER = "projectors.kafka"  # librdkafka's log (KafkaSettings.client_config)


class KafkaSettings(Section):
    env_section: ClassVar[str] = "KAFKA_"
    bootstrap_servers: str = "127.0.0.1:59092"
    topic_partitions: int = Field(default=4, ge=1, le=256)
    replication_factor: int = Field(default=1, ge=1)
    security_protocol: str = Field(default="PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str = Field(default="SCRAM-SHA-512", pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_ca_location: Path | None = None

    _unset_ca = field_validator("ssl_ca_location", mode="before")(_empty_is_unset)

    def client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) connection settings, security included. librdkafka logs to
        the ``projectors.kafka`` logger (served by the client's poll), not straight to stderr, and
        does not log a broker closing an idle connection (the local broker does that often)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "logger": logging.getLogger(KAFKA_LOGGER),
            "log.connection.close": False,
        }
        if self.security_protocol.startswith("SASL"):
            config.update({
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.get_secret_value(),
            })
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config

    @field_validator("bootstrap_servers")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...]")
        return value


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
    poll_interval_ms: int = Field(default=5, ge=1, le=60_000)
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

    _unset_state_dir = field_validator("state_dir", mode="before")(_empty_is_unset)
    _check_state_dir = field_validator("state_dir")(_absolute)

    @property
    def table_list(self) -> list[str]:
        return [t.strip() for t in self.tables.split(",") if t.strip()]


class FalkorSettings(Section):
    env_section: ClassVar[str] = "FALKORDB_"
    host: str = "127.0.0.1"
    port: int = 56379
    graph: str = "social"

    _check_port = field_validator("port")(_port)


class RedisSettings(Section):
    """The Redis server of the ``redis`` projection: the worker writes as ``worker_user``, readers
    read as ``reader_user`` (ACL users, each limited to keys under ``prefix``)."""

    env_section: ClassVar[str] = "REDIS_"
    # the Redis server's host (the redis projection's store)
    host: str = "127.0.0.1"
    # the Redis server's port
    port: int = 56380
    # every key of the projection starts with this (a rebuild writes under `<prefix>-g<n>`)
    prefix: str = Field(default="projectors", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    # the ACL user the redis worker writes as (its keys only)
    worker_user: str = "projectors-worker"
    # that user's password
    worker_password: SecretStr = SecretStr("local-worker-password")
    # the ACL user read services read as (may only read)
    reader_user: str = "projectors-reader"
    # that user's password
    reader_password: SecretStr = SecretStr("local-reader-password")
    # UTC-day leaderboards older than this many days expire (the spec keeps only the window)
    retention_days: int = Field(default=7, ge=1, le=366)
    # one Redis call's timeout
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    _check_port = field_validator("port")(_port)


class CosmosSettings(Section):
    env_section: ClassVar[str] = "COSMOS_"
    endpoint: str = "http://127.0.0.1:58081"
    # The local Cosmos REST server accepts any base64 key; Azure needs the account key.
    key: SecretStr = SecretStr(
        "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
    )
    # read services' key (Azure: a read-only account key); empty: the key above (the local server has one)
    read_key: SecretStr = SecretStr("")
    database: str = "social"
    verify_tls: bool = True
    # how long a removed item's tombstone stays (it keeps an older write from bringing the item back):
    # longer than any write can stay in flight, i.e. than a worker can keep retrying one batch
    tombstone_ttl_s: int = Field(default=86_400, ge=60)
    # one request's timeout: shorter than the server's patience, so a request it stopped answering is
    # abandoned and only its item retried
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)

    # the counters' and the notifications' accounts, apart from the feed's (``endpoint``): the local
    # stack runs one Cosmos server per projection, so each store fails alone; in Azure, usually the
    # same account
    counters_endpoint: str = "http://127.0.0.1:58082"
    notifications_endpoint: str = "http://127.0.0.1:58083"

    def reader_key(self) -> str:
        return self.read_key.get_secret_value() or self.key.get_secret_value()

    def of(self, projection: str) -> CosmosSettings:
        """These settings, with the endpoint of ``projection``'s store."""
        endpoint = {"counters": self.counters_endpoint, "notifications": self.notifications_endpoint}.get(projection)
        return self if endpoint is None else self.model_copy(update={"endpoint": endpoint})


class FeedSettings(Section):
    """The feed's hybrid fan-out: authors with at least ``celebrity_followers`` followers are not
    fanned out on write; their posts are stored once and merged into each follower's page on read."""

    env_section: ClassVar[str] = "FEED_"
    celebrity_followers: int = Field(default=1_000, ge=1)


class GraphSettings(Section):
    """Which graph store the graph projection writes: FalkorDB (local default) or Neo4j (Bolt)."""

    env_section: ClassVar[str] = "GRAPH_"
    backend: str = Field(default="falkordb", pattern=r"^(falkordb|neo4j)$")
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")
    neo4j_database: str = "neo4j"
    # read services' Neo4j user (a reader role); empty: the user above. Their sessions are READ always.
    neo4j_read_user: str = ""
    neo4j_read_password: SecretStr = SecretStr("")

    def reader_auth(self) -> tuple[str, str]:
        if self.neo4j_read_user:
            return self.neo4j_read_user, self.neo4j_read_password.get_secret_value()
        return self.neo4j_user, self.neo4j_password.get_secret_value()


class SearchSettings(Section):
    """Which search engine the search projection writes: embedded SQLite FTS5 (local default) or
    Meilisearch. Writers use the master key; read services get the search-only key."""

    env_section: ClassVar[str] = "SEARCH_"
    backend: str = Field(default="sqlite", pattern=r"^(sqlite|meilisearch)$")
    sqlite_path: Path | None = None  # default: <stack dir>/search.sqlite3; absolute
    meili_url: str = "http://127.0.0.1:7700"
    meili_master_key: SecretStr = SecretStr("")
    meili_search_key: SecretStr = SecretStr("")
    # The embedded engine ranks at most this many matching documents per search, newest first: the
    # bound on a search's cost whatever the index holds (Meilisearch bounds its own).
    sqlite_candidates: int = Field(default=500, ge=20, le=1_000_000)

    _unset_sqlite_path = field_validator("sqlite_path", mode="before")(_empty_is_unset)
    _check_sqlite_path = field_validator("sqlite_path")(_absolute)


class WorkerSettings(Section):
    """The projector workers (faust apps, one consumer group per projection)."""

    env_section: ClassVar[str] = "WORKER_"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # a batch is handed over when full or after this many seconds
    batch_within_s: float = Field(default=0.1, gt=0)
    # How long a fetch may wait on the broker for data. Kafka answers as soon as data arrives, so a
    # short wait costs only idle round trips; some brokers (Tansu) hold every fetch this long.
    fetch_max_wait_ms: int = Field(default=10, ge=1, le=30_000)
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
    _check_dir = field_validator("dir")(_absolute)

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

    _check_api_port = field_validator("api_port")(_port)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    pg: PostgresSettings
    kafka: KafkaSettings
    capture: CaptureSettings
    falkordb: FalkorSettings
    cosmos: CosmosSettings
    redis: RedisSettings = RedisSettings()
    feed: FeedSettings = FeedSettings()
    graph: GraphSettings
    search: SearchSettings
    worker: WorkerSettings
    stack: StackSettings
    verify: VerifySettings = VerifySettings()
    read: ReadSettings = ReadSettings()

    @cached_property
    def capture_state_dir(self) -> Path:
        return (self.capture.state_dir or self.stack.dir / "capture").absolute()

    @cached_property
    def search_sqlite_path(self) -> Path:
        return (self.search.sqlite_path or self.stack.dir / "search.sqlite3").absolute()


SECTIONS: dict[str, type[Section]] = {
    "pg": PostgresSettings,
    "kafka": KafkaSettings,
    "capture": CaptureSettings,
    "falkordb": FalkorSettings,
    "cosmos": CosmosSettings,
    "redis": RedisSettings,
    "feed": FeedSettings,
    "graph": GraphSettings,
    "search": SearchSettings,
    "worker": WorkerSettings,
    "stack": StackSettings,
    "verify": VerifySettings,
    "read": ReadSettings,
}


def known_variables() -> set[str]:
    """Every environment variable the settings read (without the ``_FILE`` variants)."""
    return {cls.env_name(f) for cls in SECTIONS.values() for f in cls.model_fields}


def secret_variables() -> set[str]:
    """The variables that hold secrets (given as ``<NAME>_FILE`` in deployments)."""
    fields = [(cls, f, info) for cls in SECTIONS.values() for f, info in cls.model_fields.items()]
    return {cls.env_name(f) for cls, f, info in fields if info.annotation is SecretStr}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate every setting once; unknown ``PROJECTORS_*`` variables are an error too."""
    env = dict(os.environ if environ is None else environ)
    known = known_variables()
    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in known and k.removesuffix("_FILE") not in known
    )
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(unknown)} (known: see `projectors config check`)")
    sections = {name: cls.from_env(env) for name, cls in SECTIONS.items()}
    return Settings(**sections)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process (secrets included)."""
    env: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for field in cls.model_fields:
            value = getattr(section, field)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[cls.env_name(field)] = str(value)
    return env
