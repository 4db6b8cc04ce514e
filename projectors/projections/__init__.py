"""The projections: every module of this package that defines ``DESCRIPTOR`` is one.

A :class:`~projectors.projections.descriptor.Descriptor` names a projection and says everything
that is not its logic (tables, row models, store, containers, stored item types). The worker, the
stores' factory, the operators' tools, the read client, the local stack, capture's table list, the
schemas and the deploy files look a projection up here (:func:`descriptor`, the one place an unknown
name is refused). Adding a projection is adding one module (docs/extending.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from projectors.errors import ConfigurationError
from projectors.events.models import ROW_MODELS, add_row_models
from projectors.projections.base import Projection
from projectors.projections.descriptor import Container, Descriptor, StoreKind

if TYPE_CHECKING:
    from projectors.settings import CaptureSettings, Settings

# the order every list of projections is shown in; a projection not named here comes after, by name
SHOWN_FIRST = ("feed", "counters", "graph", "search", "notifications")


def _discovered() -> dict[str, Descriptor]:
    found: list[Descriptor] = []
    for module in pkgutil.iter_modules(__path__):
        declared = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DESCRIPTOR", None)
        if isinstance(declared, Descriptor):
            found.append(declared)
    rank = {name: i for i, name in enumerate(SHOWN_FIRST)}
    found.sort(key=lambda d: (rank.get(d.name, len(rank)), d.name))
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two projection modules declare the same name: {sorted(names)}")
    return {d.name: d for d in found}


DESCRIPTORS: dict[str, Descriptor] = _discovered()
PROJECTION_NAMES: tuple[str, ...] = tuple(DESCRIPTORS)
# each projection with the default settings (names, tables, collections)
PROJECTIONS: dict[str, Projection] = {name: d.default for name, d in DESCRIPTORS.items()}
# every table some projection reads, in first-declared order: what capture publishes
SOURCE_TABLES: tuple[str, ...] = tuple(dict.fromkeys(t for d in DESCRIPTORS.values() for t in d.tables))
add_row_models({t: m for d in DESCRIPTORS.values() for t, m in d.rows.items()})
_unmodelled = [t for t in SOURCE_TABLES if t not in ROW_MODELS]
if _unmodelled:
    raise ConfigurationError(f"no row model for the tables {_unmodelled}: declare them in the projection's rows")


def descriptor(name: str) -> Descriptor:
    """The projection ``name``'s descriptor; a name that is none is a configuration error."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(DESCRIPTORS)})") from None


def projection(name: str, settings: Settings) -> Projection:
    """The projection ``name`` as ``settings`` configure it (the feed's celebrity threshold)."""
    return descriptor(name).build(settings)


def capture_tables(capture: CaptureSettings) -> list[str]:
    """The tables capture publishes: ``PROJECTORS_CAPTURE_TABLES`` when set, else every table a
    projection reads."""
    return capture.table_list or list(SOURCE_TABLES)


__all__ = [
    "DESCRIPTORS", "PROJECTIONS", "PROJECTION_NAMES", "SOURCE_TABLES", "Container", "Descriptor", "Projection",
    "StoreKind", "capture_tables", "descriptor", "projection",
]
