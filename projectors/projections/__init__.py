"""The four projections, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projectors.errors import ConfigurationError
from projectors.projections.base import Projection
from projectors.projections.counters import CountersProjection
from projectors.projections.feed import FeedProjection
from projectors.projections.graph import GraphProjection
from projectors.projections.search import SearchProjection

if TYPE_CHECKING:
    from projectors.settings import Settings

# with the default settings: names, tables and collections (what does not depend on a setting)
PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (FeedProjection(), CountersProjection(), GraphProjection(), SearchProjection())
}


def projection(name: str, settings: Settings) -> Projection:
    """The projection ``name`` as ``settings`` configure it (the feed's celebrity threshold)."""
    if name not in PROJECTIONS:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    if name == "feed":
        return FeedProjection(settings.feed.celebrity_followers)
    return PROJECTIONS[name]


__all__ = ["PROJECTIONS", "Projection", "projection"]
