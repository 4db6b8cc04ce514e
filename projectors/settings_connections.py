"""Settings of the servers the pipeline reads and writes: PostgreSQL, the broker, and each store
(FalkorDB or Neo4j, Redis, Cosmos DB, SQLite FTS5 or Meilisearch): where they are, how to log in."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from projectors.settings_base import Section, absolute_path, empty_is_unset, tcp_port


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

    _check_port = field_validator("port")(tcp_port)

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

    _unset_ca = field_validator("ssl_ca_location", mode="before")(empty_is_unset)

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


class FalkorSettings(Section):
    env_section: ClassVar[str] = "FALKORDB_"
    host: str = "127.0.0.1"
    port: int = 56379
    graph: str = "social"

    _check_port = field_validator("port")(tcp_port)


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
    # items of the first feed page kept in Redis for each user reading their feed (reads of up to
    # this many items are answered from it); 0: no feed pages in Redis
    feed_page_size: int = Field(default=50, ge=0, le=500)
    # a user's feed page leaves Redis this long after their last read of it (each read extends it)
    feed_page_ttl_s: int = Field(default=900, ge=10, le=86_400)

    _check_port = field_validator("port")(tcp_port)


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

    _unset_sqlite_path = field_validator("sqlite_path", mode="before")(empty_is_unset)
    _check_sqlite_path = field_validator("sqlite_path")(absolute_path)
