"""The one failure model: which errors are sent again (retriable), which go to the dead letters
(refused), and which stop the worker (configuration), for the stores' clients and the source."""

from __future__ import annotations

import psycopg
import pytest
from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError
from psycopg import errors as pg_errors
from redis import exceptions as rx

from projectors.errors import ConfigurationError, RetriableError, Severity, severity
from projectors.stores.cosmos import severity as cosmos_severity
from projectors.stores.graph_transports import FalkorTransport


@pytest.mark.parametrize(
    "error",
    [
        CosmosHttpResponseError(status_code=408, message="request timeout"),
        CosmosHttpResponseError(status_code=410, message="gone: the partition moved"),
        CosmosHttpResponseError(status_code=429, message="throttled"),
        CosmosHttpResponseError(status_code=503, message="unavailable"),
        CosmosClientTimeoutError(),
        IncompleteReadError("the answer was cut off"),
        ServiceRequestError("connection refused"),
        ServiceResponseError("connection reset"),
        ConnectionResetError(),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status_code", "") or ""),
)
def test_transient_cosmos_failures_are_retried(error: Exception) -> None:
    assert cosmos_severity(error) is Severity.RETRIABLE


@pytest.mark.parametrize("status", [400, 404, 409, 413])
def test_definite_cosmos_refusals_refuse_the_item(status: int) -> None:
    assert cosmos_severity(CosmosHttpResponseError(status_code=status, message="refused")) is Severity.REFUSED


@pytest.mark.parametrize("status", [401, 403])
def test_a_wrong_or_read_only_cosmos_key_is_the_configuration(status: int) -> None:
    """A worker given the read services' read-only key stops; it does not dead-letter every item."""
    assert cosmos_severity(CosmosHttpResponseError(status_code=status, message="forbidden")) is Severity.CONFIGURATION


def test_a_bug_is_not_retried() -> None:
    assert cosmos_severity(KeyError("_etag")) is Severity.REFUSED
    assert severity(KeyError("_etag")) is Severity.REFUSED


@pytest.mark.parametrize(
    "error",
    [
        rx.ConnectionError("connection refused"),
        rx.TimeoutError("Timeout reading from socket"),
        rx.BusyLoadingError("loading the dataset in memory"),
        rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        rx.ResponseError("Max pending queries exceeded"),
        rx.ResponseError("Query timed out"),
    ],
    ids=str,
)
def test_falkordb_failures_of_the_server_are_retried(error: Exception) -> None:
    assert FalkorTransport("127.0.0.1", 1, "g").severity(error) is Severity.RETRIABLE


@pytest.mark.parametrize(
    "error",
    [rx.ResponseError("errMsg: Invalid input 'X': expected MATCH"), rx.DataError("bad parameter"), KeyError("v")],
    ids=str,
)
def test_falkordb_refusals_of_the_query_are_not(error: Exception) -> None:
    assert FalkorTransport("127.0.0.1", 1, "g").severity(error) is Severity.REFUSED


@pytest.mark.parametrize(
    "error",
    [rx.AuthenticationError("invalid password"), rx.ResponseError("NOAUTH Authentication required."),
     rx.NoPermissionError("NOPERM this user has no permissions to run the 'GRAPH.QUERY' command")],
    ids=str,
)
def test_a_refused_falkordb_login_is_the_configuration(error: Exception) -> None:
    assert FalkorTransport("127.0.0.1", 1, "g").severity(error) is Severity.CONFIGURATION


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.OperationalError("connection refused"), Severity.RETRIABLE),
        (psycopg.InterfaceError("the connection is closed"), Severity.RETRIABLE),
        (RetriableError("the store is down"), Severity.RETRIABLE),
        (ConnectionResetError(), Severity.RETRIABLE),
        (pg_errors.InsufficientPrivilege("permission denied for table posts"), Severity.CONFIGURATION),
        (pg_errors.UndefinedTable('relation "notification_reads" does not exist'), Severity.CONFIGURATION),
        (psycopg.OperationalError('password authentication failed for user "projectors_feed"'),
         Severity.CONFIGURATION),
        (ConfigurationError("PROJECTORS_PG_DSN"), Severity.CONFIGURATION),
        (psycopg.DataError("invalid byte sequence"), Severity.REFUSED),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), Severity.REFUSED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v.value),
)
def test_the_source_and_other_errors_by_class(error: Exception, expected: Severity) -> None:
    """A missing privilege or table on the source stops the worker (every event would fail the same
    way: dead-lettering them would empty the stream into the dead letters); a value the source
    cannot hold refuses only the event that carries it."""
    assert severity(error) is expected
