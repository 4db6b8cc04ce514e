"""What `projectors bench-feed` measures and how much, and what it found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Say = Callable[[str], None]
FEED_CONTAINERS = ("userFeed", "feedPosts", "feedFollows", "feedAuthors")
WORKERS = ("feed", "counters")
# Request units of each request kind on Azure for items of about 1 KB with the default indexing
# policy (Azure's published figures: a point read 1 RU, a write about 5-6 RU, a patch about as much
# as a write, a query at least about 2.5-3 RU per partition it reads; a cross-partition query
# once per physical partition, 1 here). A refused request (404, 409, 412) costs about 1 RU: the local
# server counts those apart (``<kind>_refused``).
RU_PER_REQUEST = {
    "point_read": 1.0, "point_write": 5.7, "patch": 5.7, "query": 2.9, "cross_partition_query": 2.9,
    "read_feed": 2.9, "change_feed": 2.9,
    # a transactional batch costs the sum of its operations: counted by ``batch_items`` (created)
    "batch": 0.0, "batch_items": 5.7,
}
SERVERLESS_USD_PER_MILLION_RU = 0.25  # Azure Cosmos DB serverless, published rate


@dataclass(frozen=True)
class FeedBenchConfig:
    users: int = 80
    follows: int = 600
    operations: int = 4000
    celebrity_followers: int = 1000  # PROJECTORS_FEED_CELEBRITY_FOLLOWERS of the workers
    fanout_followers: int = 10_000
    page_samples: int = 200
    follow_author_posts: int = 2000
    per_kind: int = 20  # operations of each event kind for the requests table
    stop_s: float = 30.0
    verify_wait_s: float = 900.0
    seed_value: int = 17


TINY = FeedBenchConfig(
    users=30, follows=120, operations=300, celebrity_followers=40, fanout_followers=60, page_samples=20,
    follow_author_posts=60, per_kind=3, stop_s=3.0, verify_wait_s=300.0,
)


@dataclass
class FeedResults:
    config: dict[str, Any]
    code: str = "this commit"
    conditions: dict[str, Any] = field(default_factory=dict)
    random: dict[str, Any] = field(default_factory=dict)
    fanout: dict[str, Any] = field(default_factory=dict)
    follow: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    drill: dict[str, Any] = field(default_factory=dict)
