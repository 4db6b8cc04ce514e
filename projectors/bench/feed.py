"""``projectors bench feed``: the feed and counters at a realistic scale, on a private local stack.

Scenarios, each timed from the PostgreSQL COMMIT (never a timed assertion: figures are printed and
written to ``feed-results.json`` / ``feed-results.md``):

- **random**: a social workload with power-law popularity (80 users, 4,000 random operations by
  default: posts, edits, visibility changes, deletes, follows and unfollows, blocks, mutes, replies,
  reactions), written as fast as PostgreSQL takes it; seconds from the last write until ``verify``
  is clean for the feed and the counters;
- **fan-out**: a post by an author with 10,000 followers: seconds until it is on the followers'
  pages through the read client (a sample of followers, every one of them checked);
- **follow**: a follow of an author with 2,000 posts: seconds until the follower's first page is
  right, and until all 2,000 items are there;
- **requests**: store requests per event, by event kind and request kind, counted by the Cosmos
  server itself (so code that does not count its own requests can be compared: ``--before REV``
  runs the same scenarios with the workers of an earlier commit), with the request units they
  would cost on Azure;
- **drill**: the Cosmos server stopped (SIGSTOP) for 30 s in the middle of a large batch, then
  resumed: the batch finishes, zero drift, no dead letters.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

from projectors.bench.feed_config import (
    SERVERLESS_USD_PER_MILLION_RU,
    TINY,
    WORKERS,
    FeedBenchConfig,
    FeedResults,
    Say,
)
from projectors.bench.feed_scenarios import (
    drill,
    fanout,
    follow,
    per_event_kind,
    random_workload,
    request_units,
    server_requests,
)
from projectors.bench.private_stack import bench_settings
from projectors.stack import local
from projectors.stack.commands import Worker
from projectors.stores.factory import open_raw_store

__all__ = ["TINY", "FeedBenchConfig", "FeedResults", "run", "server_requests"]


class BeforeWorker(Worker):
    """A worker running the code of another commit (``--before``): that checkout first on the path,
    and none of the settings it does not know (it would refuse to start)."""

    code_dir = ""
    known: frozenset[str] = frozenset()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith("PROJECTORS_") or k in self.known}
        env["PYTHONPATH"] = self.code_dir
        return env


def known_settings(code_dir: Path) -> frozenset[str]:
    """The environment variables the settings of the code in ``code_dir`` read."""
    done = subprocess.run(
        [sys.executable, "-c", "from projectors.settings import known_variables; print(*known_variables())"],
        env={**os.environ, "PYTHONPATH": str(code_dir)}, cwd=code_dir, capture_output=True, text=True, check=True,
    )
    return frozenset(done.stdout.split())


# -- the run -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A checkout of ``rev`` beside this one (its workers run from it)."""
    root = Path(__file__).resolve().parents[2]
    path = Path(tempfile.mkdtemp(prefix="projectors-before-"))
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)], capture_output=True)


SCENARIOS = ("random", "fanout", "follow", "requests", "drill")


def run(config: FeedBenchConfig, out_dir: Path, say: Say = print, before: str | None = None,
        scenarios: tuple[str, ...] = SCENARIOS) -> FeedResults:
    out_dir.mkdir(parents=True, exist_ok=True)
    if before:  # earlier code may never converge on some scenarios: it gets a bounded wait
        config = replace(config, verify_wait_s=min(config.verify_wait_s, 300.0))
    results = FeedResults(config=asdict(config), code=f"commit {before}" if before else "this commit")
    results.conditions = {"cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "load_average": os.getloadavg()}
    root = Path(tempfile.mkdtemp(prefix="projectors-feedbench-", dir="/tmp"))
    settings = bench_settings(root)
    # earlier code fans every post out on write: this process (verify, the read client) then judges
    # it by that rule, a threshold no author reaches
    threshold = 10**9 if before else config.celebrity_followers
    settings = settings.model_copy(update={"feed": settings.feed.model_copy(
        update={"celebrity_followers": threshold})})
    say(f"== stack in {root} ({results.code})")
    stack = contextlib.ExitStack()
    try:
        local.up(settings, local.SERVERS, say=say)
        for name in WORKERS:  # every container this code reads exists, whatever code the workers run
            store = open_raw_store(settings, name)
            store.ensure_schema()
            store.close()
        if before:
            code = stack.enter_context(worktree(before))
            known = known_settings(code)
            workers = [type(f"Before_{n}", (BeforeWorker,), {
                "name": f"worker-{n}", "projection": n, "code_dir": str(code), "known": known,
            })(settings) for n in WORKERS]
        else:
            workers = local.parts(settings, [f"worker-{n}" for n in WORKERS])  # type: ignore[misc]
        for w in workers:
            w.start(60)
        steps = {"random": random_workload, "fanout": fanout, "follow": follow, "requests": per_event_kind,
                 "drill": drill}
        assert set(steps) == set(SCENARIOS)
        for name in scenarios:
            try:
                steps[name](settings, config, results, say)
            except Exception as exc:  # a scenario that fails is reported, the others still run
                say(f"== {name}: failed: {type(exc).__name__}: {exc}")
                setattr(results, name, {"error": f"{type(exc).__name__}: {exc}"})
        for w in workers:
            w.stop()
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)
        stack.close()
    (out_dir / "feed-results.json").write_text(json.dumps(asdict(results), indent=2, default=str))
    (out_dir / "feed-results.md").write_text(markdown(results))
    say(f"== wrote {out_dir / 'feed-results.md'} and feed-results.json")
    return results


def markdown(r: FeedResults) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# projectors bench feed ({r.code})\n\nRun {r.conditions.get('started')} on {r.conditions.get('cpus')} "
      f"CPUs, load average at start {', '.join(f'{x:.1f}' for x in r.conditions.get('load_average', ()))}; "
      f"celebrity threshold {r.config.get('celebrity_followers')} followers.\n\n")
    if r.random:
        x = r.random
        w("## Random workload\n\n")
        if "error" in x:
            w(f"Failed: {x['error']}\n\n")
        else:
            w(f"{x['operations']} ({x['posts']} posts; the busiest author wrote {x['most_posts_by_one_author']}; "
              f"the most followed has {x['most_followers']} followers), written in {x['write_s']:.1f}s. "
              f"`verify` clean for feed and counters **{x['seconds_to_clean']:.1f}s** after the last write "
              f"(drift {x['drift']}).\n\n| projection | events | requests per event (refused: 404/409/412) | "
              "RU/event |\n|---|---|---|---|\n")
            for group in WORKERS:
                n = max(1, x["worker_events"][group])
                kinds = x["requests"][group]
                shown = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(kinds.items()))
                w(f"| {group} | {x['worker_events'][group]} | {shown} | {request_units(kinds) / n:.1f} |\n")
            w("\n(requests per event consumed, as the Cosmos server counted them)\n\n")
    for title, section in (("Fan-out on read", r.fanout), ("A follow of an author with many posts", r.follow),
                           ("Drill: the Cosmos server stopped mid-batch", r.drill)):
        if section:
            w(f"## {title}\n\n" + "\n".join(f"- {k}: {v}" for k, v in section.items()) + "\n\n")
    if r.requests:
        w("## Requests per event, by event kind\n\n| event | projection | requests per event | "
          f"RU per event (Azure) | USD per million events (serverless, ${SERVERLESS_USD_PER_MILLION_RU}/M RU) |\n"
          "|---|---|---|---|---|\n")
        for event, groups in r.requests.items():
            if event == "error":
                w(f"| failed: {groups} | | | | |\n")
                continue
            for group, kinds in groups.items():
                if kinds:
                    ru = request_units(kinds)
                    shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(kinds.items()))
                    w(f"| {event} | {group} | {shown} | {ru:.1f} | {ru * SERVERLESS_USD_PER_MILLION_RU:.2f} |\n")
    return out.getvalue()
