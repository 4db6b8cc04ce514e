"""Error classes. Each failure the projectors meet is one of these, so callers decide by class.

- :class:`ConfigurationError`: a setting or a prerequisite is wrong; stop at start with the message.
- :class:`RetriableError`: a timeout, a 429 or 5xx, a store that is down; retry with backoff.
- :class:`PoisonEventError`: the event itself is bad; dead-letter it with the reason, never retry.
- :class:`DataLossRisk`: continuing would silently skip changes; stop and tell the operator.
"""

from __future__ import annotations


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


class RebuildAbandoned(ProjectorsError):
    """A rebuild's new store did not verify against the source: the live store is left as it was."""


def response_headers(exc: BaseException) -> dict[str, str]:
    """The headers of the answer an error carries (an HTTP client's error), else none."""
    headers = getattr(exc, "headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    return dict(headers) if headers else {}
