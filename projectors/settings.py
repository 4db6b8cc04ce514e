"""Typed settings, read once from the environment and validated at start-up.

Every setting is an environment variable named ``PROJECTORS_<SECTION>_<FIELD>``; a secret may
instead be given as a file path in ``<NAME>_FILE`` (Docker and Kubernetes secrets). A bad value
stops the process with a message that names the variable (:class:`SettingsError`).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "PROJECTORS_"
SOURCE_TABLES: tuple[str, ...] = ("users", "posts", "replies", "follows", "reactions", "blocks", "mutes")


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
            elif f"{var}_FILE" in environ:
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

    _check_port = field_validator("port")(_port)

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string, each value quoted by libpq's rules (a password with spaces,
        quotes or ``=`` is one value, never more keys)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password.get_secret_value(),
            dbname=database or self.database, connect_timeout=5,
        )


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

    def client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings, security included."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
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
    tables: str = ",".join(SOURCE_TABLES)
    heartbeat_interval_ms: int = Field(default=10_000, ge=0)
    snapshot_mode: str = Field(default="initial", pattern=r"^(initial|no_data|never|when_needed|always)$")
    state_dir: Path | None = None  # default: <stack dir>/capture
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

    @property
    def table_list(self) -> list[str]:
        return [t.strip() for t in self.tables.split(",") if t.strip()]


class FalkorSettings(Section):
    env_section: ClassVar[str] = "FALKORDB_"
    host: str = "127.0.0.1"
    port: int = 56379
    graph: str = "social"

    _check_port = field_validator("port")(_port)


class CosmosSettings(Section):
    env_section: ClassVar[str] = "COSMOS_"
    endpoint: str = "http://127.0.0.1:58081"
    # The local Cosmos REST server accepts any base64 key; Azure needs the account key.
    key: SecretStr = SecretStr(
        "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
    )
    database: str = "social"
    verify_tls: bool = True
    # how long a removed item's tombstone stays (it keeps an older write from bringing the item back):
    # longer than any write can stay in flight, i.e. than a worker can keep retrying one batch
    tombstone_ttl_s: int = Field(default=86_400, ge=60)
    # one request's timeout: shorter than the server's patience, so a request it stopped answering is
    # abandoned and only its item retried
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)


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


class SearchSettings(Section):
    """Which search engine the search projection writes: embedded SQLite FTS5 (local default) or
    Meilisearch. Writers use the master key; read services get the search-only key."""

    env_section: ClassVar[str] = "SEARCH_"
    backend: str = Field(default="sqlite", pattern=r"^(sqlite|meilisearch)$")
    sqlite_path: Path | None = None  # default: <stack dir>/search.sqlite3
    meili_url: str = "http://127.0.0.1:7700"
    meili_master_key: SecretStr = SecretStr("")
    meili_search_key: SecretStr = SecretStr("")


class WorkerSettings(Section):
    """The projector workers (faust apps, one consumer group per projection)."""

    env_section: ClassVar[str] = "WORKER_"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # A batch is handed over when full or every batch_within_s: the bound on the time an event
    # waits in the worker before its store write starts.
    batch_within_s: float = Field(default=0.1, gt=0)
    # How long a fetch may wait on the broker for data. Kafka answers as soon as data arrives, so a
    # short wait costs only idle round trips; some brokers (Tansu) hold every fetch this long.
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=30_000)
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


class StackSettings(Section):
    """The local stack (``projectors stack``): where its processes keep data, pids and logs."""

    env_section: ClassVar[str] = "STACK_"
    dir: Path = Path(".stack")
    start_timeout_s: float = Field(default=60.0, gt=0)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    pg: PostgresSettings
    kafka: KafkaSettings
    capture: CaptureSettings
    falkordb: FalkorSettings
    cosmos: CosmosSettings
    feed: FeedSettings = FeedSettings()
    graph: GraphSettings
    search: SearchSettings
    worker: WorkerSettings
    stack: StackSettings

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
    "feed": FeedSettings,
    "graph": GraphSettings,
    "search": SearchSettings,
    "worker": WorkerSettings,
    "stack": StackSettings,
}


def known_variables() -> set[str]:
    """Every environment variable the settings read (without the ``_FILE`` variants)."""
    return {cls.env_name(f) for cls in SECTIONS.values() for f in cls.model_fields}


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
