"""The figures of a bench run, one dataclass per phase's results, and their JSON (``results.json``).

:func:`plain` turns a :class:`Results` into the JSON document: each dataclass becomes an object of
its fields, in their order, under their own names unless a field names its JSON key (``KEY``); a
field marked ``OMIT_NONE`` is left out while it is None (a figure that run did not take), and one
marked ``EMPTY_WHEN_NONE`` is ``{}`` while it is None (a phase that did not run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from projectors.bench.config import BenchConfig
from projectors.operations.load import LoadReport

KEY = "json_key"
OMIT_NONE = {"omit_none": True}
EMPTY_WHEN_NONE = {"empty_when_none": True}


def named(key: str) -> Any:
    """A field written under the JSON key ``key``."""
    return field(metadata={KEY: key})


def plain(value: Any) -> Any:
    """``value`` as JSON data (dicts, lists, numbers, strings)."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if item is None and f.metadata.get("omit_none"):
                continue
            if item is None and f.metadata.get("empty_when_none"):
                item = {}
            out[f.metadata.get(KEY, f.name)] = plain(item)
        return out
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass
class Conditions:
    cpus: int | None = None
    started: str = ""
    load_average: tuple[float, ...] = ()


@dataclass
class LoadFigures:
    """The rows the load wrote (per operation) and the events capture published for them."""

    seed_rows: dict[str, int] = field(default_factory=dict)
    seed_s: float = 0.0
    bulk_rows: dict[str, int] = field(default_factory=dict)
    bulk_s: float = 0.0
    rows: int = 0
    topic_events: int = 0
    rebuild_topic_events: int | None = field(default=None, metadata=OMIT_NONE)  # topped up for the rebuild


# -- throughput ------------------------------------------------------------------------------------
@dataclass
class WorkerRun:
    """A worker run's figures, between its first and last published batch (see ``worker_rate``)."""

    events: int
    complete: bool
    seconds: float
    events_per_s: float
    operations: int
    batches: int
    ops_per_s: float
    stages_s: dict[str, float]
    peak_rss_mb: float
    # the load on PostgreSQL: statements and rows read per event over the whole run (a run of one
    # batch has nothing between its samples)
    source_queries_per_event: float
    source_rows_per_event: float
    # CPU per event, from the first batch on: the whole process, and the thread running the
    # batches (decode, touched, plan, store client, stats); the rest is faust, aiokafka, the loop
    cpu_us_per_event: float
    own_cpu_us_per_event: float
    cpu_share: float
    # store requests per event over the whole run, by kind (stores that count them: Cosmos)
    store_requests_per_event: dict[str, float] = field(default_factory=dict)


@dataclass
class RawStoreRun:
    """The store client alone writing the projection's documents."""

    operations: int
    seconds: float
    ops_per_s: float
    batch: int
    setup_s: float


@dataclass
class ThroughputRun:
    topic_events: int
    bare_consume_per_s: float
    bare_faust_per_s: float
    bare_faust_events: int
    bare_faust_cpu_us_per_event: float
    null_store: WorkerRun
    real_store: WorkerRun
    raw_store: RawStoreRun
    ratio_null_vs_faust: float | None
    ratio_ops_vs_raw_store: float | None


@dataclass
class ScaleRun:
    """One projection's worker shapes (``bench/scale.py``), by store (null, real) and shape, one
    run per round."""

    topic_events: int
    partitions: int
    cpus: int
    bare_faust_per_s: float
    runs: dict[str, dict[str, list[WorkerRun]]]

    def best(self, store: str, shape: str) -> float:
        """The best events/s of a shape's rounds (0: not run)."""
        return max((r.events_per_s for r in self.runs.get(store, {}).get(shape, [])), default=0.0)


# -- rebuild ---------------------------------------------------------------------------------------
@dataclass
class BuildFigures:
    """A build's figures as ``LoadReport.as_dict`` gives them (rounded, under the same keys)."""

    items: int
    seconds: float
    items_per_second: int = named("itemsPerSecond")
    source_wait_seconds: float = named("sourceWaitSeconds")
    store_seconds: float = named("storeSeconds")
    ticket: int = 0
    refused: int = 0

    @classmethod
    def of(cls, report: LoadReport) -> BuildFigures:
        d = report.as_dict()
        return cls(d["items"], d["seconds"], d["itemsPerSecond"], d["sourceWaitSeconds"], d["storeSeconds"],
                   d["ticket"], d["refused"])


@dataclass
class TopicReplay:
    events: int
    seconds: float
    events_per_s: float


@dataclass
class RebuildRun:
    items: int
    bulk_load: BuildFigures
    bulk_load_runs_s: list[float]
    from_state_runs_s: list[float]
    from_state: BuildFigures
    ratio_state_vs_bulk: float | None
    from_topics: TopicReplay | None = field(default=None, metadata=OMIT_NONE)
    ratio_topics_vs_state_seconds: float | None = field(default=None, metadata=OMIT_NONE)


# -- lag -------------------------------------------------------------------------------------------
@dataclass
class Percentiles:
    """Commit -> visible latencies (seconds); only ``n`` when nothing was seen."""

    n: int
    p50: float | None = field(default=None, metadata=OMIT_NONE)
    p95: float | None = field(default=None, metadata=OMIT_NONE)
    p99: float | None = field(default=None, metadata=OMIT_NONE)
    max: float | None = field(default=None, metadata=OMIT_NONE)

    def figures(self) -> dict[str, float]:
        """The percentiles taken (none when nothing was seen), by name."""
        return {k: v for k, v in (("p50", self.p50), ("p95", self.p95), ("p99", self.p99), ("max", self.max))
                if v is not None}


# a change's way, one stage per step (``bench/lag.py``): from the commit (the source's ts_ms) to read
# by Debezium (the envelope's ts_ms), published (the record's timestamp), fetched by the worker (in its
# batch buffer), handed to the projector, applied (the store returned), visible (the prober saw it)
LAG_STAGES = ("commit -> read", "read -> published", "published -> fetched", "fetched -> handed",
              "handed -> applied", "applied -> visible")
TOTAL = "commit -> visible"


@dataclass
class WriterRate:
    achieved_per_s: float
    target_per_s: float


@dataclass
class LagRun:
    """One write rate: each store's latencies; in the JSON, one key per store and ``writer``."""

    stores: dict[str, Percentiles]
    writer: WriterRate

    def to_json(self) -> dict[str, Any]:
        return {**{store: plain(p) for store, p in self.stores.items()}, "writer": plain(self.writer)}


@dataclass
class BatchProfile:
    """The workers' batches between two samples: count, size, milliseconds per batch in each stage."""

    batches: int
    events_per_batch: float
    stage_ms_per_batch: dict[str, float]


# -- fan-out, drills, verify -----------------------------------------------------------------------
@dataclass
class FanoutRun:
    followers: int
    feed_writes: int
    seconds_to_every_feed: float


@dataclass
class Drill:
    drill: str
    drift_after: dict[str, int] = field(default_factory=dict)  # per projection, verified after every drill
    verify_seconds: float = 0.0
    dead_letters: dict[str, int] | None = field(default=None, metadata=OMIT_NONE)  # the poison drill's
    expected_dead_letters: dict[str, int] | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class VerifyCheck:
    seconds: float
    items_read: int
    requests: int
    request_kinds: dict[str, int]
    events_read: int
    keys_checked: int
    drift: int
    store_changes: int = 0  # items the store's change feed named (incremental)
    found: bool = False  # the item changed in the store behind the projector's back was found


@dataclass
class VerifySize:
    """A full and an incremental verify of one store size."""

    full: VerifyCheck
    items: int
    incremental: VerifyCheck


@dataclass
class DigestVerify:
    """A whole-store verify of the graph (FalkorDB) read item by item, and by the server's range
    digests: clean, then with one node changed behind the projector."""

    items: int
    whole_s: float
    whole_items_read: int
    digests_s: float
    digests_read: int
    digests_items_read: int
    drifted_s: float
    drifted_items_read: int
    drift_found: int


@dataclass
class VerifyFigures:
    projection: str
    sizes: list[VerifySize]
    graph_digests: DigestVerify | None = field(default=None, metadata=OMIT_NONE)
    worker_alone: WorkerRun | None = field(default=None, metadata=OMIT_NONE)
    worker_beside_verify: WorkerRun | None = field(default=None, metadata=OMIT_NONE)
    verifies_alongside: int | None = field(default=None, metadata=OMIT_NONE)
    worker_beside_budgeted_verify: WorkerRun | None = field(default=None, metadata=OMIT_NONE)
    budgeted_verifies_alongside: int | None = field(default=None, metadata=OMIT_NONE)
    verify_budget_items_s: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class Results:
    config: BenchConfig
    conditions: Conditions = field(default_factory=Conditions)
    load: LoadFigures = field(default_factory=LoadFigures)
    throughput: dict[str, ThroughputRun] = field(default_factory=dict)
    rebuild: dict[str, RebuildRun] = field(default_factory=dict)
    lag: dict[str, LagRun] = field(default_factory=dict)
    lag_batches: dict[str, dict[str, BatchProfile]] = field(default_factory=dict)
    # writes/s -> store -> stage (LAG_STAGES and TOTAL, timed from the source's commit) -> seconds
    lag_stages: dict[str, dict[str, dict[str, Percentiles]]] = field(default_factory=dict)
    fanout: list[FanoutRun] = field(default_factory=list)
    drills: list[Drill] = field(default_factory=list)
    verify: VerifyFigures | None = field(default=None, metadata=EMPTY_WHEN_NONE)
    scale: dict[str, ScaleRun] = field(default_factory=dict)
