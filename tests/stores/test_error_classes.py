"""Which store errors the retrying store sends again, and which go to the dead letters."""

from __future__ import annotations

import pytest
from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError
from redis import exceptions as rx

from projectors.stores.documents import retriable
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
    assert retriable(error)


@pytest.mark.parametrize("status", [400, 403, 404, 413])
def test_definite_cosmos_refusals_are_not(status: int) -> None:
    assert not retriable(CosmosHttpResponseError(status_code=status, message="refused"))


def test_a_bug_is_not_retried() -> None:
    assert not retriable(KeyError("_etag"))


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
    assert FalkorTransport("127.0.0.1", 1, "g").retriable(error)


@pytest.mark.parametrize(
    "error",
    [rx.ResponseError("errMsg: Invalid input 'X': expected MATCH"), rx.DataError("bad parameter"), KeyError("v")],
    ids=str,
)
def test_falkordb_refusals_of_the_query_are_not(error: Exception) -> None:
    assert not FalkorTransport("127.0.0.1", 1, "g").retriable(error)
