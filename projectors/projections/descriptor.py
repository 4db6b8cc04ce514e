"""What a projection declares about itself, beside its logic: the one record every other part reads.

Each projection module defines ``DESCRIPTOR``; ``projectors.projections`` finds them. Everything
else is derived from the descriptors, nothing restates them:

- capture's table list, publication and topics: the union of ``tables`` (``source_tables``);
- the decoder's row models: the base tables' models (``events/models.py``) plus ``rows``;
- the JSON Schemas under ``schemas/projections/<name>/``: ``stored``;
- the store: ``store``, and for Cosmos its ``containers`` (partition path, paths left out of the
  indexing policy) and ``cosmos_account`` (which endpoint setting names its account);
- the workers: consumer group ``projectors-<name>``, the local stack's ``worker-<name>`` part, the
  compose service and the Kubernetes Deployment (``projectors/deploy_files.py``, committed files
  checked by a test), and the secrets a worker of that store needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from projectors.events.models import Row
from projectors.model import table_topic
from projectors.projections.base import Projection

if TYPE_CHECKING:
    from projectors.settings import Settings

StoreKind = Literal["cosmos", "graph", "search", "redis"]
CosmosAccount = Literal["feed", "counters", "notifications"]


@dataclass(frozen=True)
class Container:
    """A Cosmos container: its partition key path, and the document paths its indexing policy
    leaves out (``/bio/?``: kept in the item, never filtered or sorted on)."""

    partition: str
    unindexed: tuple[str, ...] = ()

    def indexing_policy(self) -> dict[str, Any] | None:
        if not self.unindexed:
            return None  # the account's default: every path
        return {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": "/*"}],
            "excludedPaths": [{"path": p} for p in (*self.unindexed, '/"_etag"/?')],
        }


@dataclass(frozen=True)
class Descriptor:
    name: str
    default: Projection  # with the default settings: tables and collections
    store: StoreKind
    # Cosmos: container -> its declaration (a bare string is the partition path)
    containers: Mapping[str, Container | str] = field(default_factory=dict)
    configured: Callable[[Settings], Projection] | None = None  # when a setting changes the projection
    # collection -> the model of the documents the projection derives (checked against its spec)
    documents: Mapping[str, Any] = field(default_factory=dict)
    # collection -> the type a read service gets from the store's client (the JSON Schemas)
    stored: Mapping[str, Any] = field(default_factory=dict)
    # row models of source tables no other projection reads (table -> model)
    rows: Mapping[str, type[Row]] = field(default_factory=dict)
    # which Cosmos account (endpoint setting) holds the containers: the feed's is PROJECTORS_COSMOS_ENDPOINT
    cosmos_account: CosmosAccount = "feed"
    # a worker's Kubernetes resources: cpu and memory requests, then limits
    resources: tuple[str, str, str, str] = ("250m", "256Mi", "1", "512Mi")

    @property
    def tables(self) -> tuple[str, ...]:
        return self.default.tables

    @property
    def group(self) -> str:
        """The consumer group of the projection's workers."""
        return f"projectors-{self.name}"

    @property
    def partitions(self) -> dict[str, str]:
        """Cosmos: container -> partition key path."""
        return {name: c.partition if isinstance(c, Container) else c for name, c in self.containers.items()}

    @property
    def indexing(self) -> dict[str, dict[str, Any]]:
        """Cosmos: the containers whose indexing policy is not the default, with their policy."""
        out = {}
        for name, c in self.containers.items():
            policy = c.indexing_policy() if isinstance(c, Container) else None
            if policy is not None:
                out[name] = policy
        return out

    def build(self, settings: Settings) -> Projection:
        return self.configured(settings) if self.configured else self.default

    def topics(self, settings: Settings) -> list[str]:
        """The capture topics of the projection's tables."""
        return [table_topic(settings.capture.topic_prefix, t) for t in self.tables]
