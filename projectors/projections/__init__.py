"""The four projections, by name."""

from __future__ import annotations

from projectors.projections.base import Projection
from projectors.projections.counters import CountersProjection
from projectors.projections.feed import FeedProjection
from projectors.projections.graph import GraphProjection
from projectors.projections.search import SearchProjection

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (FeedProjection(), CountersProjection(), GraphProjection(), SearchProjection())
}

__all__ = ["PROJECTIONS", "Projection"]
