"""Error classes and the one failure model. Each failure the projectors meet has a
:class:`Severity`, so every caller (a store write, a source read, a batch) decides the same way:

- ``RETRIABLE``: the same call may succeed later (a timeout, a 429 or 5xx, a store or PostgreSQL
  that is down): retried with backoff by :mod:`projectors.runtime.retry`, never dead-lettered;
- ``REFUSED``: this item or event is refused, now and later: dead-lettered with the reason;
- ``CONFIGURATION``: a setting, a credential or a prerequisite is wrong (a bad key, a missing
  table, a missing privilege): retrying cannot help and dead-lettering would empty the stream into
  the dead letters, so the process stops with the message and acknowledges nothing.

The classes raised on purpose:

- :class:`ConfigurationError`: a setting or a prerequisite is wrong; stop at start with the message.
- :class:`RetriableError`: a timeout, a 429 or 5xx, a store that is down; retry with backoff.
- :class:`PoisonEventError`: the event itself is bad; dead-letter it with the reason, never retry.
- :class:`DataLossRisk`: continuing would silently skip changes; stop and tell the operator.
- :class:`DeadLetterFailed`: a dead letter could not be written; the worker stops, nothing is acknowledged.
"""

from __future__ import annotations

from enum import Enum

import psycopg
from psycopg import errors as pg_errors


class ProjectorsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(ProjectorsError):
    """A bad setting or a missing prerequisite; the message names it and says what to do."""


class RetriableError(ProjectorsError):
    """A transient failure: the same operation may succeed later."""


class PoisonEventError(ProjectorsError):
    """The event cannot be processed, now or later; it goes to the dead-letter topic."""


class DataLossRisk(ProjectorsError):
    """Going on would leave a gap in the captured changes that nothing downstream could see."""


class DeadLetterFailed(ProjectorsError):
    """A dead letter could not be written after bounded retries: the worker stops (exit non-zero)
    rather than acknowledge a batch whose bad events are neither applied nor dead-lettered."""


class RebuildAbandoned(ProjectorsError):
    """A rebuild's new store did not verify against the source: the live store is left as it was."""


def response_headers(exc: BaseException) -> dict[str, str]:
    """The headers of the answer an error carries (an HTTP client's error), else none."""
    headers = getattr(exc, "headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    return dict(headers) if headers else {}


class Severity(Enum):
    RETRIABLE = "retriable"
    REFUSED = "refused"
    CONFIGURATION = "configuration"


# transport and server-side failures of the source and of any client: a retry may succeed
TRANSIENT: tuple[type[BaseException], ...] = (
    RetriableError, ConnectionError, TimeoutError, psycopg.OperationalError, psycopg.InterfaceError,
)
# PostgreSQL answers that name a wrong setup, not a bad event: a role without the privilege, a
# table or column the migrations have not created, a wrong password
PG_CONFIGURATION: tuple[type[BaseException], ...] = (
    pg_errors.InsufficientPrivilege, pg_errors.UndefinedTable, pg_errors.UndefinedColumn,
    pg_errors.InvalidPassword, pg_errors.InvalidAuthorizationSpecification,
)


def severity(exc: BaseException) -> Severity:
    """The severity of an error by its class. Store adapters classify their clients' errors
    themselves (status codes, server messages) and carry the result in
    :class:`~projectors.model.ItemFailure`; everything else is judged here. An error
    nobody recognises (a bug, a value the source cannot hold) is ``REFUSED``: the event that caused
    it is isolated and dead-lettered, the rest of its batch goes on. An error that carries a
    ``severity`` (one judged in another process) keeps it."""
    carried = getattr(exc, "severity", None)
    if isinstance(carried, Severity):
        return carried
    if isinstance(exc, (ConfigurationError, *PG_CONFIGURATION)):
        return Severity.CONFIGURATION
    if isinstance(exc, psycopg.OperationalError) and "authentication failed" in str(exc):
        return Severity.CONFIGURATION
    if isinstance(exc, TRANSIENT):
        return Severity.RETRIABLE
    return Severity.REFUSED


# clients' own "the server did not answer" errors, by (module prefix, class name) anywhere in the
# error's class hierarchy: the azure SDK, redis (FalkorDB), neo4j, requests (Meilisearch), Kafka
_UNANSWERED = (
    ("azure.", "ServiceRequestError"), ("azure.", "ServiceResponseError"),
    ("redis.", "ConnectionError"), ("redis.", "TimeoutError"), ("redis.", "BusyLoadingError"),
    ("neo4j.", "ServiceUnavailable"), ("neo4j.", "SessionExpired"),
    ("requests.", "ConnectionError"), ("requests.", "Timeout"),
    ("cimpl", "KafkaException"), ("confluent_kafka", "KafkaException"),
)


def unanswered(exc: BaseException) -> bool:
    """Whether ``exc`` says a store, the source or the broker did not answer (down, unreachable,
    timed out): what a command reports in one line instead of a traceback."""
    if severity(exc) is Severity.RETRIABLE:
        return True
    return any(
        cls.__module__.startswith(module) and cls.__name__ == name
        for cls in type(exc).__mro__
        for module, name in _UNANSWERED
    )


def translated(what: str, exc: Exception, severity: Severity) -> Exception:
    """A client's error as the class its severity means (kept as the cause), for calls outside a
    batch's per-item failures: schema, lookups, reads."""
    if severity is Severity.RETRIABLE:
        return RetriableError(f"{what}: {exc}")
    if severity is Severity.CONFIGURATION:
        return ConfigurationError(f"{what}: {exc}")
    return exc


class PauseTimeout(ProjectorsError):
    """The consumer group still had members when the pause's bound was reached."""
