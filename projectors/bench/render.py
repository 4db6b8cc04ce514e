"""A bench run's report: ``results.json``, the tables of ``results.md``, the chart ``results.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from projectors.bench.lag import PROBE_S
from projectors.bench.report import LAG_STAGES, TOTAL, Percentiles, Results, WorkerRun, plain
from projectors.bench.scale import SHAPES as SCALE_SHAPES
from projectors.runtime.batch import STAGES as BATCH_STAGES


def write_reports(results: Results, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(plain(results), indent=2, default=str))
    (out_dir / "results.md").write_text(markdown(results))
    chart(results, out_dir / "results.png")


def shown(value: Any, digits: int = 0) -> str:
    if not value:
        return "-"  # not measured, or too few events to time
    return f"{value:,.{digits}f}"


def markdown(r: Results) -> str:
    lines = [
        "# projectors bench", "",
        f"Run {r.conditions.started} on {r.conditions.cpus} CPUs (load average at start "
        f"{', '.join(f'{x:.1f}' for x in r.conditions.load_average)}); "
        f"{r.load.topic_events:,} events in the topics; local stack (PostgreSQL, Tansu, FalkorDB, "
        "Cosmos REST server, SQLite FTS5).", "",
        "## Throughput (events/s; ratios in the same run)", "",
        "| projection | topic events | bare consumer | bare faust | worker, null store | worker, real store | "
        "store ops/s (worker) | store client alone ops/s | null ÷ faust | worker ÷ store alone | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in r.throughput.items():
        real, null, raw = t.real_store, t.null_store, t.raw_store
        lines.append(
            f"| {name} | {t.topic_events:,} | {shown(t.bare_consume_per_s)} | {shown(t.bare_faust_per_s)} | "
            f"{shown(null.events_per_s)} | {shown(real.events_per_s)}{'' if real.complete else ' (partial)'} | "
            f"{shown(real.ops_per_s)} | {shown(raw.ops_per_s)} | {shown(t.ratio_null_vs_faust, 2)} | "
            f"{shown(t.ratio_ops_vs_raw_store, 2)} | {shown(max(real.peak_rss_mb, null.peak_rss_mb))} |"
        )
    lines += ["", "## Where a worker's time goes (real store, share of wall time)", "",
              "| projection | " + " | ".join(STAGES) + " |", "|---|" + "---|" * len(STAGES)]
    for name, t in r.throughput.items():
        shares = stage_shares(t.real_store)
        lines.append(f"| {name} | " + " | ".join(f"{shares.get(s, 0.0):.0%}" for s in STAGES) + " |")
    lines += ["", "## The load on the source (PostgreSQL), real store", "",
              "| projection | statements per event | rows read per event | share of the batches' time reading it "
              "| store requests per event (Cosmos, by kind) |",
              "|---|---|---|---|---|"]
    for name, t in r.throughput.items():
        run = t.real_store
        reading = stage_shares(run).get("plan (source reads)", 0)
        requests = ", ".join(f"{k} {v:.2f}" for k, v in sorted(run.store_requests_per_event.items()) if v) or "-"
        lines.append(f"| {name} | {run.source_queries_per_event:.2f} | "
                     f"{run.source_rows_per_event:.2f} | {reading:.0%} | {requests} |")
    lines += ["", "## CPU per event (µs, from the first batch on)", "",
              "The stage timers are wall time in the projector, which runs while faust fetches the next "
              "batch; CPU time says who is busy. A worker is two Python processes (the default): faust, "
              "aiokafka and the event loop in one, the projector's code in a child of its own, each with "
              "its own GIL; their CPU is counted together.", "",
              "| projection | store | worker busy (cores) | whole worker | projector's code | "
              "faust + aiokafka + loop + hand-over | bare faust agent |",
              "|---|---|---|---|---|---|---|"]
    for name, t in r.throughput.items():
        for label, run in (("null", t.null_store), ("real", t.real_store)):
            if not run.cpu_us_per_event:
                continue
            rest = run.cpu_us_per_event - run.own_cpu_us_per_event
            lines.append(f"| {name} | {label} | {run.cpu_share:.2f} | {run.cpu_us_per_event:.0f} | "
                         f"{run.own_cpu_us_per_event:.0f} | {rest:.0f} | "
                         f"{shown(t.bare_faust_cpu_us_per_event)} |")
    lines += ["", "## Rebuild (build phase)", "",
              "The store's bulk load of the items (read beforehand) is the baseline of the build from the source's "
              "state (the same items read from PostgreSQL in one snapshot while writing); the replay of the "
              "topics is the build with `--from-topics`. The bulk load and the build from state run twice each "
              "(bulk, state, state, bulk); the faster of each pair is shown.", "",
              "| projection | items | bulk load items/s | from state: seconds | items/s | ÷ bulk load | "
              "source wait s | from topics: events | seconds | events/s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, b in r.rebuild.items():
        state, topics = b.from_state, b.from_topics
        lines.append(f"| {name} | {b.items:,} | {shown(b.bulk_load.items_per_second)} | {state.seconds:.1f} | "
                     f"{shown(state.items_per_second)} | {shown(b.ratio_state_vs_bulk, 2)} | "
                     f"{state.source_wait_seconds:.1f} | {shown(topics and topics.events)} | "
                     f"{shown(topics and topics.seconds, 1)} | {shown(topics and topics.events_per_s)} |")
    lines += ["", "## Lag: PostgreSQL COMMIT -> visible (ms)", "",
              "| writes/s (achieved) | store | n | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|---|"]
    for rate, lag_run in r.lag.items():
        achieved = lag_run.writer.achieved_per_s
        for store, p in lag_run.stores.items():
            if not p.n:
                continue
            ms = {k: v * 1000 for k, v in p.figures().items()}
            lines.append(f"| {rate} ({achieved:.0f}) | {store} | {p.n:.0f} | {ms['p50']:.0f} | "
                         f"{ms['p95']:.0f} | {ms['p99']:.0f} | {ms['max']:.0f} |")
    if r.lag_batches:
        lines += ["", "The workers' batches during those runs (ms per batch, wall time in the batch thread):", "",
                  "| writes/s | worker | batches | events per batch | " + " | ".join(BATCH_STAGES) + " |",
                  "|---|---|---|---|" + "---|" * len(BATCH_STAGES)]
        for rate, workers in r.lag_batches.items():
            for name, profile in workers.items():
                ms = profile.stage_ms_per_batch
                lines.append(f"| {rate} | {name} | {profile.batches} | {profile.events_per_batch:.0f} | "
                             + " | ".join(f"{ms.get(stage, 0.0):.1f}" for stage in BATCH_STAGES) + " |")
    if r.lag_stages:
        lines += ["", "Where each change's time went, per stage, p50 / p99 ms (the posts the workers' batch clock "
                  "and the prober both saw; `commit` is the source's ts_ms, `visible` includes the prober's "
                  f"look every {PROBE_S * 1000:.0f} ms plus its query):", "",
                  "| writes/s | store | n | " + " | ".join([*LAG_STAGES, TOTAL]) + " |",
                  "|---|---|---|" + "---|" * (len(LAG_STAGES) + 1)]
        for rate, by_store in r.lag_stages.items():
            for store, stages in by_store.items():
                n = stages[TOTAL].n if TOTAL in stages else 0
                cells = [f"{shown(p.p50 and p.p50 * 1000)} / {shown(p.p99 and p.p99 * 1000)}" if p.n else "-"
                         for p in (stages.get(stage, Percentiles(n=0)) for stage in (*LAG_STAGES, TOTAL))]
                lines.append(f"| {rate} | {store} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Fan-out (feed)", "", "| followers | feed writes | seconds until every feed has it |",
              "|---|---|---|"]
    for f in r.fanout:
        lines.append(f"| {f.followers:,} | {f.feed_writes:,} | {f.seconds_to_every_feed:.1f} |")
    lines += ["", "## Verify: full and incremental (counters, local Cosmos server)", "",
              "Each store size: a fresh generation loaded from the source's state, then a few events, then one "
              "counter changed directly in the store (no event). The incremental check reads those events and "
              "the container's change feed since the load, and compares the items they name.", "",
              "| store items | check | seconds | store items read | store requests | events read | "
              "in the change feed | keys checked | changed item found |",
              "|---|---|---|---|---|---|---|---|---|"]
    for size in r.verify.sizes if r.verify else []:
        for mode, v in (("full", size.full), ("incremental", size.incremental)):
            share = f" ({v.items_read / size.items:.2%})" if mode == "incremental" and size.items else ""
            lines.append(f"| {size.items:,} | {mode} | {v.seconds:.2f} | {v.items_read:,}{share} | "
                         f"{v.requests:,} | {v.events_read:,} | {v.store_changes:,} | {v.keys_checked:,} | "
                         f"{'yes' if v.found else 'NO'} |")
    if r.verify and r.verify.graph_digests:
        g = r.verify.graph_digests
        lines += ["", f"The graph (FalkorDB), {g.items:,} items, whole-store verify:", "",
                  "| check | seconds | store items read | range digests |", "|---|---|---|---|",
                  f"| every item read | {g.whole_s:.2f} | {g.whole_items_read:,} | - |",
                  f"| by range digests, clean | {g.digests_s:.2f} | {g.digests_items_read:,} | {g.digests_read:,} |",
                  f"| by range digests, one node changed in the store (found: {g.drift_found}) | {g.drifted_s:.2f} | "
                  f"{g.drifted_items_read:,} | {g.digests_read:,} |"]
    if r.verify and r.verify.worker_alone and r.verify.worker_beside_verify:
        lines += ["", f"A counters worker alone: {shown(r.verify.worker_alone.events_per_s)} events/s; with full "
                  f"verifies of another generation running alongside ({r.verify.verifies_alongside} done): "
                  f"{shown(r.verify.worker_beside_verify.events_per_s)} events/s ("
                  f"{shown(r.verify.worker_beside_verify.events_per_s / (r.verify.worker_alone.events_per_s or 1), 2)}"
                  " of alone)."]
    if r.verify and r.verify.worker_alone and r.verify.worker_beside_budgeted_verify:
        paced = r.verify.worker_beside_budgeted_verify.events_per_s
        lines += ["", f"With those verifies paced to {shown(r.verify.verify_budget_items_s)} store items/s "
                  f"(`PROJECTORS_VERIFY_READ_BUDGET_ITEMS_S`; {r.verify.budgeted_verifies_alongside} done): "
                  f"{shown(paced)} events/s ({shown(paced / (r.verify.worker_alone.events_per_s or 1), 2)} of alone)."]
    lines += ["", "## Scaling a projection: where the projector runs, processes", "",
              "The same topics consumed by a worker whose projector runs in a thread of its process (one GIL "
              "with faust's event loop), by one whose projector runs in a child process (the default), and by "
              "two workers sharing the partitions in one consumer group; the best of the interleaved rounds, "
              "events/s.", ""]
    for name, sc in r.scale.items():
        lines += [f"{name}: {sc.topic_events:,} events in partitions of {sc.partitions}, {sc.cpus} CPUs for "
                  f"everything (broker, PostgreSQL, stores, workers); bare faust agent "
                  f"{shown(sc.bare_faust_per_s)} events/s.", "",
                  "| store | " + " | ".join(label for label, _, _ in SCALE_SHAPES)
                  + " | child process ÷ thread | two workers ÷ one | null ÷ faust (default) |",
                  "|---|" + "---|" * (len(SCALE_SHAPES) + 3)]
        for store in ("null", "real"):
            one, two, pair = (sc.best(store, label) for label, _, _ in SCALE_SHAPES)
            lines.append(f"| {store} | {shown(one)} | {shown(two)} | {shown(pair)} | "
                         f"{shown(two / one if one else 0, 2)} | {shown(pair / two if two else 0, 2)} | "
                         f"{shown(two / sc.bare_faust_per_s if store == 'null' and sc.bare_faust_per_s else 0, 2)} |")
        lines.append("")
    lines += ["", "## Fault drills (each under load, then `verify`)", ""]
    for d in r.drills:
        lines.append(f"- {d.drill}: drift after {d.drift_after}"
                     + (f"; dead letters {d.dead_letters} (expected {d.expected_dead_letters})"
                        if d.dead_letters is not None else ""))
    return not_run_sections("\n".join(lines) + "\n", set(r.config.phases))


SECTION_PHASE = {"Throughput": "throughput", "Where a worker": "throughput", "CPU per event": "throughput",
                 "The load on the source": "throughput",
                 "Rebuild": "rebuild", "Lag": "lag", "Fan-out": "fanout", "Verify": "verify", "Scaling": "scale",
                 "Fault drills": "drills"}


def not_run_sections(text: str, ran: set[str]) -> str:
    """Each section of a phase this run left out (``--phases``) says so instead of an empty table."""
    head, *sections = text.split("\n## ")
    out = [head]
    for section in sections:
        title = section.split("\n", 1)[0]
        phase = next((p for prefix, p in SECTION_PHASE.items() if title.startswith(prefix)), None)
        out.append(section if phase is None or phase in ran else f"{title}\n\nNot run (`--phases`).\n")
    return "\n## ".join(out)


STAGES = ("poll+commit (faust)", *BATCH_STAGES)


def stage_shares(run: WorkerRun) -> dict[str, float]:
    stages = dict(run.stages_s)
    wall = max(0.001, run.seconds, sum(stages.values()))
    stages["poll+commit (faust)"] = max(0.0, wall - sum(stages.values()))
    return {k: v / wall for k, v in stages.items()}


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right, stages) = plt.subplots(1, 4, figsize=(25, 5))
    names = list(r.throughput)
    runs = list(r.throughput.values())
    series = [("bare consumer", [t.bare_consume_per_s for t in runs]),
              ("bare faust", [t.bare_faust_per_s for t in runs]),
              ("worker, null store", [t.null_store.events_per_s for t in runs]),
              ("worker, real store", [t.real_store.events_per_s for t in runs])]
    width = 0.2
    for i, (label, values) in enumerate(series):
        left.bar([x + i * width for x in range(len(names))], values, width, label=label)
    left.set_xticks([x + 1.5 * width for x in range(len(names))], names)
    left.set_yscale("log")
    left.set_ylabel("events/s (log)")
    left.set_title("Throughput, same topics, same run")
    left.legend(fontsize=8)
    scale_labels: list[str] = []
    scale_series: dict[str, list[float]] = {label: [] for label, _, _ in SCALE_SHAPES}
    faust_line: list[float] = []
    for name, sc in r.scale.items():
        for store in ("null", "real"):
            scale_labels.append(f"{name}\n{store} store")
            faust_line.append(sc.bare_faust_per_s)
            for label, _, _ in SCALE_SHAPES:
                scale_series[label].append(sc.best(store, label))
    for i, (label, values) in enumerate(scale_series.items()):
        middle.bar([x + i * 0.27 for x in range(len(scale_labels))], values, 0.27, label=label)
    middle.plot([x + 0.27 for x in range(len(scale_labels))], faust_line, "k_", markersize=30, label="bare faust")
    middle.set_xticks([x + 0.27 for x in range(len(scale_labels))], scale_labels)
    middle.set_ylabel("events/s")
    middle.set_title("Projector in a thread or a child process; two workers")
    if not scale_labels:
        middle.text(0.5, 0.5, "not run (--phases)", ha="center", va="center", transform=middle.transAxes)
    middle.legend(fontsize=8)
    labels, p50, p99 = [], [], []
    for rate, lag_run in r.lag.items():
        for store, p in lag_run.stores.items():
            if p.n and p.p50 is not None and p.p99 is not None:
                labels.append(f"{store}\n{rate}/s")
                p50.append(p.p50 * 1000)
                p99.append(p.p99 * 1000)
    xs = range(len(labels))
    right.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
    right.bar([x + 0.2 for x in xs], p99, 0.4, label="p99")
    right.set_xticks(list(xs), labels)
    right.set_ylabel("ms")
    right.set_title("COMMIT -> visible")
    if not labels:
        right.text(0.5, 0.5, "not run (--phases)", ha="center", va="center", transform=right.transAxes)
    right.legend(fontsize=8)
    stage_panel(stages, r)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stage_panel(ax: Any, r: Results) -> None:
    """Stacked bars: each stage's p50 per store and write rate (commit -> visible, stage by stage)."""
    labels = [f"{store}\n{rate}/s" for rate, by_store in r.lag_stages.items() for store in by_store]
    bottoms = [0.0] * len(labels)
    for stage in LAG_STAGES:
        values = [(s.get(stage) or Percentiles(n=0)).p50 or 0.0
                  for by_store in r.lag_stages.values() for s in by_store.values()]
        ms = [v * 1000 for v in values]
        ax.bar(range(len(labels)), ms, 0.6, bottom=bottoms, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, ms, strict=True)]
    ax.set_xticks(list(range(len(labels))), labels)
    ax.set_ylabel("ms (p50 of each stage)")
    ax.set_title("Where a change's time goes")
    if not labels:
        ax.text(0.5, 0.5, "not run (--phases)", ha="center", va="center", transform=ax.transAxes)
    ax.legend(fontsize=7)
