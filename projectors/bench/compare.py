"""``projectors bench --before REV``: the two runs' headline figures side by side (``comparison.md``)."""

from __future__ import annotations

from pathlib import Path

from projectors.bench.report import Results, ThroughputRun


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def comparison(before: Results, after: Results, rev: str) -> str:
    lines = [f"# Before ({rev}) and after (this commit), one invocation", "",
             "## COMMIT -> visible (ms, p50 / p99)", "", "| writes/s | store | before | after |", "|---|---|---|---|"]
    for rate, run in after.lag.items():
        old = before.lag.get(rate)
        for store, p in run.stores.items():
            q = old.stores.get(store) if old else None
            was = f"{ms(q.p50)} / {ms(q.p99)}" if q is not None and q.n else "-"
            lines.append(f"| {rate} | {store} | {was} | {ms(p.p50)} / {ms(p.p99)} |")
    lines += ["", "## Throughput (events/s; the worker on a null store against the bare faust agent of the same run)",
              "", "| projection | before: faust, null store (ratio) | after: faust, null store (ratio) |",
              "|---|---|---|"]
    for name, t in after.throughput.items():
        b = before.throughput.get(name)

        def cell(x: ThroughputRun | None) -> str:
            if x is None:
                return "-"
            ratio = "-" if x.ratio_null_vs_faust is None else f"{x.ratio_null_vs_faust:.2f}"
            return f"{x.bare_faust_per_s:,.0f}, {x.null_store.events_per_s:,.0f} ({ratio})"

        lines.append(f"| {name} | {cell(b)} | {cell(t)} |")
    return "\n".join(lines) + "\n"


def write_comparison(before: Results, after: Results, rev: str, out_dir: Path) -> str:
    text = comparison(before, after, rev)
    (out_dir / "comparison.md").write_text(text)
    return text
