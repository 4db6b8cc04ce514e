"""Which Cosmos errors the retrying store sends again, and which go to the dead letters."""

from __future__ import annotations

import pytest
from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from projectors.stores.documents import retriable


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
def test_transient_failures_are_retried(error: Exception) -> None:
    assert retriable(error)


@pytest.mark.parametrize("status", [400, 403, 404, 413])
def test_definite_refusals_are_not(status: int) -> None:
    assert not retriable(CosmosHttpResponseError(status_code=status, message="refused"))


def test_a_bug_is_not_retried() -> None:
    assert not retriable(KeyError("_etag"))
