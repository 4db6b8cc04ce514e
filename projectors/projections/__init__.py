"""The projections, declared once each: what every part of the system needs to know about one.

A :class:`Descriptor` names a projection and says everything that is not its logic: how to build it
from the settings, which store it writes (and the Cosmos containers with their partition paths),
its topics and consumer group (its dead-letter topic: ``runtime/dead_letters.py``). The worker, the
stores' factory, the operators' tools, the read client, the local stack and the CLI look a
projection up here (:func:`descriptor`, the one place an unknown name is refused). Adding a
projection is one module and one descriptor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from projectors.errors import ConfigurationError
from projectors.projections.base import Projection
from projectors.projections.counters import CountersProjection
from projectors.projections.feed import CONTAINERS as FEED_CONTAINERS
from projectors.projections.feed import FeedProjection
from projectors.projections.graph import GraphProjection
from projectors.projections.notifications import CONTAINERS as NOTIFICATIONS_CONTAINERS
from projectors.projections.notifications import NotificationsProjection
from projectors.projections.search import SearchProjection

if TYPE_CHECKING:
    from projectors.settings import Settings

StoreKind = Literal["cosmos", "graph", "search"]


@dataclass(frozen=True)
class Descriptor:
    name: str
    default: Projection  # with the default settings: tables and collections
    store: StoreKind
    containers: Mapping[str, str] = field(default_factory=dict)  # Cosmos: container -> partition path
    configured: Callable[[Settings], Projection] | None = None  # when a setting changes the projection

    @property
    def tables(self) -> tuple[str, ...]:
        return self.default.tables

    @property
    def group(self) -> str:
        """The consumer group of the projection's workers."""
        return f"projectors-{self.name}"

    def build(self, settings: Settings) -> Projection:
        return self.configured(settings) if self.configured else self.default

    def topics(self, settings: Settings) -> list[str]:
        """The capture topics of the projection's tables."""
        from projectors.capture.connector import table_topic

        return [table_topic(settings.capture.topic_prefix, t) for t in self.tables]


DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor("feed", FeedProjection(), "cosmos", FEED_CONTAINERS,
                   configured=lambda s: FeedProjection(s.feed.celebrity_followers)),
        Descriptor("counters", CountersProjection(), "cosmos", {"counters": "/subjectId"}),
        Descriptor("graph", GraphProjection(), "graph"),
        Descriptor("search", SearchProjection(), "search"),
        Descriptor("notifications", NotificationsProjection(), "cosmos", NOTIFICATIONS_CONTAINERS),
    )
}
PROJECTION_NAMES: tuple[str, ...] = tuple(DESCRIPTORS)
# each projection with the default settings (names, tables, collections)
PROJECTIONS: dict[str, Projection] = {name: d.default for name, d in DESCRIPTORS.items()}


def descriptor(name: str) -> Descriptor:
    """The projection ``name``'s descriptor; a name that is none is a configuration error."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(DESCRIPTORS)})") from None


def projection(name: str, settings: Settings) -> Projection:
    """The projection ``name`` as ``settings`` configure it (the feed's celebrity threshold)."""
    return descriptor(name).build(settings)


__all__ = ["DESCRIPTORS", "PROJECTIONS", "PROJECTION_NAMES", "Descriptor", "Projection", "descriptor", "projection"]
