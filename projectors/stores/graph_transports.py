"""The two transports of the graph store: FalkorDB's native client (local) and the Neo4j driver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projectors.errors import Severity
from projectors.graph_model import EDGE_ENDS, NODE_LABELS
from projectors.settings import FalkorSettings, Settings
from projectors.stores.graph import PAGE, GraphStore

# FalkorDB's replies about its own state, not the query (its error_msgs.h): sending again later works
FALKORDB_TRANSIENT = ("max pending queries exceeded", "query timed out")


class FalkorTransport:
    """``read_only``: every query is sent as ``GRAPH.RO_QUERY``, which the server refuses to run when
    it would write (the read services' session)."""

    backend = "falkordb"

    def __init__(self, host: str, port: int, graph: str, timeout_s: float = 10.0, read_only: bool = False) -> None:
        self.host, self.port, self.graph_name, self.timeout_s = host, port, graph, timeout_s
        self.read_only = read_only
        self._db: Any = None
        self._graph: Any = None

    def _connected(self) -> Any:
        """Connected on first use (the client connects at construction): a server that is down when a
        worker starts is an outage to retry, not a crash."""
        if self._graph is None:
            from falkordb import FalkorDB
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # no retries inside the client: retry is the store wrapper's job (and its readiness signal)
            self._db = FalkorDB(
                host=self.host,
                port=self.port,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=3.0,
                retry=Retry(NoBackoff(), 0),
            )
            self._graph = self._db.select_graph(self.graph_name)
        return self._graph

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        graph = self._connected()
        result = (graph.ro_query if self.read_only else graph.query)(cypher, dict(params or {}))
        names = [h[1] if isinstance(h, (list, tuple)) else h for h in (result.header or [])]
        return [{name: _plain(value) for name, value in zip(names, row, strict=False)} for row in result.result_set]

    def load_library(self, name: str, script: str) -> None:
        """Load (or replace) a JavaScript function library on the server (``GRAPH.UDF LOAD``)."""
        self._connected()
        self._db.connection.execute_command("GRAPH.UDF", "LOAD", "REPLACE", name, script)

    def ping(self) -> bool:
        """A fresh connection with a short timeout: answers within ~2 s even when the server hangs."""
        from falkordb import FalkorDB
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            db = FalkorDB(
                host=self.host, port=self.port, socket_timeout=2.0, socket_connect_timeout=2.0,
                retry=Retry(NoBackoff(), 0),
            )
            try:
                db.select_graph(self.graph_name).query("RETURN 1")
            finally:
                db.connection.close()
            return True
        except Exception:
            return False

    def severity(self, exc: Exception) -> Severity:
        """Connection and timeout failures, and the server's answers about itself rather than about
        the query (busy, out of memory, read-only replica, a query timeout, too many queued
        queries) are retriable: a batch waits for those to pass instead of dead-lettering every
        operation. A refused password is the configuration; other answers refuse the query."""
        import redis
        from redis import exceptions as rx

        if isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError)) or (
            isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            return Severity.CONFIGURATION
        if isinstance(
            exc,
            (
                redis.ConnectionError,
                redis.TimeoutError,
                rx.InvalidResponse,
                rx.TryAgainError,
                rx.OutOfMemoryError,
                rx.ReadOnlyError,
                ConnectionError,
                TimeoutError,
            ),
        ):
            return Severity.RETRIABLE
        if isinstance(exc, redis.ResponseError) and any(m in str(exc).lower() for m in FALKORDB_TRANSIENT):
            return Severity.RETRIABLE
        return Severity.REFUSED

    def ddl(self) -> list[str]:
        nodes = [f"CREATE INDEX FOR (n:{label}) ON (n.id)" for label in NODE_LABELS]
        edges = [f"CREATE INDEX FOR ()-[r:{rel}]-() ON (r.id)" for rel in EDGE_ENDS]
        return [*nodes, "CREATE INDEX FOR (t:Tombstone) ON (t.key)", *edges]

    def prepare(self) -> None:
        """A FalkorDB graph exists once written to: nothing to create."""

    def drop(self) -> None:
        import redis

        try:
            self._connected().delete()
        except redis.ResponseError as exc:  # no such graph
            if "empty key" not in str(exc).lower() and "invalid graph" not in str(exc).lower():
                raise
        self._graph = None

    def close(self) -> None:
        if self._db is not None:
            self._db.connection.close()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Neo4jTransport:
    """``read_only``: queries run in sessions of ``READ_ACCESS`` mode, in which Neo4j refuses writes
    (the read services' session, with a reader user)."""

    backend = "neo4j"

    def __init__(
        self, uri: str, auth: tuple[str, str], database: str, own_database: bool = False, read_only: bool = False
    ) -> None:
        import neo4j

        self._driver = neo4j.GraphDatabase.driver(uri, auth=auth, connection_acquisition_timeout=10.0)
        self._database = database
        self.read_only = read_only
        # a rebuild's generation is a database of its own (``neo4j-g2``), created and dropped here;
        # that needs Neo4j Enterprise (or Aura): Community has one database and refuses CREATE DATABASE
        self._own_database = own_database

    def prepare(self) -> None:
        if self._own_database:
            self._driver.execute_query(f"CREATE DATABASE `{self._database}` IF NOT EXISTS WAIT", database_="system")

    def drop(self) -> None:
        if self._own_database:
            self._driver.execute_query(f"DROP DATABASE `{self._database}` IF EXISTS WAIT", database_="system")
        else:
            self._driver.execute_query(
                "MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS", database_=self._database
            )

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if self.read_only:
            import neo4j

            def read(tx: Any) -> list[dict[str, Any]]:
                return [record.data() for record in tx.run(cypher, dict(params or {}))]

            with self._driver.session(database=self._database, default_access_mode=neo4j.READ_ACCESS) as session:
                rows: list[dict[str, Any]] = session.execute_read(read)
                return rows
        records, _summary, _keys = self._driver.execute_query(
            cypher, dict(params or {}), database_=self._database
        )
        return [record.data() for record in records]

    def severity(self, exc: Exception) -> Severity:
        from neo4j.exceptions import AuthError, Forbidden, ServiceUnavailable, SessionExpired, TransientError

        if isinstance(exc, (AuthError, Forbidden)):
            return Severity.CONFIGURATION
        transient = (ServiceUnavailable, SessionExpired, TransientError, ConnectionError, TimeoutError)
        return Severity.RETRIABLE if isinstance(exc, transient) else Severity.REFUSED

    def ddl(self) -> list[str]:
        nodes = [
            f"CREATE CONSTRAINT projectors_{label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
            for label in NODE_LABELS
        ]
        edges = [
            f"CREATE INDEX projectors_{rel.lower()}_id IF NOT EXISTS FOR ()-[r:{rel}]-() ON (r.id)" for rel in EDGE_ENDS
        ]
        tomb = "CREATE CONSTRAINT projectors_tombstone_key IF NOT EXISTS FOR (t:Tombstone) REQUIRE t.key IS UNIQUE"
        return [*nodes, tomb, *edges]

    def close(self) -> None:
        self._driver.close()


def falkordb_store(settings: FalkorSettings, graph: str | None = None, page: int = PAGE) -> GraphStore:
    return GraphStore(FalkorTransport(settings.host, settings.port, graph or settings.graph), page)


def neo4j_store(uri: str, auth: tuple[str, str], database: str, own_database: bool = False) -> GraphStore:
    return GraphStore(Neo4jTransport(uri, auth, database, own_database))


def graph_reader(settings: Settings, generation_suffix: str = "") -> FalkorTransport | Neo4jTransport:
    """The read services' graph session: read-only (FalkorDB ``GRAPH.RO_QUERY``, Neo4j ``READ_ACCESS``
    sessions with the reader user), on the graph of one generation."""
    g = settings.graph
    if g.backend == "neo4j":
        return Neo4jTransport(g.neo4j_uri, g.reader_auth(), g.neo4j_database + generation_suffix, read_only=True)
    f = settings.falkordb
    return FalkorTransport(f.host, f.port, f.graph + generation_suffix, read_only=True)
