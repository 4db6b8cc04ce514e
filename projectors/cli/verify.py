"""`projectors verify [--repair]`: the projections against the spec computed from PostgreSQL."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time

from projectors.cli.common import NAME_WIDTH, projection_name, sample_fraction
from projectors.errors import ConfigurationError, DataLossRisk
from projectors.exit_codes import ExitCode
from projectors.operations.repair import repair_drifted
from projectors.operations.verify import RECHECK_PAUSE_S, Drift, Sample, describe_diff, verify_until_clean
from projectors.projections import PROJECTION_NAMES
from projectors.settings import Settings
from projectors.stores.factory import open_raw_store


def add_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    verify = sub.add_parser("verify", help=help)
    verify.add_argument("projection", nargs="*", type=projection_name, help="default: all")
    verify.add_argument(
        "--wait", type=float, default=0.0,
        help="first wait up to N seconds for the pipeline to apply what PostgreSQL holds now, then re-check "
        "the drifted keys until clean or the time is up",
    )
    verify.add_argument(
        "--sample", type=sample_fraction, default=None, metavar="SHARE",
        help="check a seeded random share of the spec's keys (1%% or 0.01) by point reads",
    )
    verify.add_argument("--seed", type=int, default=None, help="the sample's seed (default: a new one, printed)")
    verify.add_argument("--json", action="store_true", help="print the verdicts as JSON (stdout holds the JSON alone)")
    verify.add_argument("--repair", action="store_true", help="rewrite exactly the drifted items from the spec")
    verify.add_argument(
        "--full", action="store_true",
        help="check every item (default: only what events touched since the last clean verify, when there was one)",
    )
    verify.set_defaults(func=lambda args, settings: run_verify(
        settings, args.projection, args.wait, args.sample, args.seed, args.json, args.repair, args.full
    ))


def run_verify(
    settings: Settings, names: list[str], wait_s: float, share: float | None = None, seed: int | None = None,
    as_json: bool = False, repair: bool = False, full: bool = False,
) -> int:
    """Verify ``names`` (all when empty), print the verdict, exit 0 clean, 1 drift, 69 when a
    store or the source did not answer (no verdict)."""
    names = names or list(PROJECTION_NAMES)
    sample = None
    if share is not None:
        sample = Sample(share, seed if seed is not None else secrets.randbelow(1_000_000))
    elif seed is not None:
        raise ConfigurationError("--seed chooses the keys of a --sample")

    last_shown = [0.0]
    deadline = time.monotonic() + wait_s

    def show(results: list[Drift]) -> None:
        clean = all(r.total == 0 for r in results)
        if as_json or (not clean and time.monotonic() - last_shown[0] < 15.0):
            return  # while waiting, one progress report every 15 s
        last_shown[0] = time.monotonic()
        for r in results:
            state = "ok" if r.total == 0 else f"DRIFT missing={r.missing} extra={r.extra} wrong={r.wrong}"
            print(f"  {r.projection:<{NAME_WIDTH}} checked {r.checked:>7}  held {r.held:>7}  {state}")
        left = deadline - time.monotonic()
        if not clean and left > 0:
            print(f"verify: changes may still be on their way through the pipeline: re-checking the drifted "
                  f"item(s) every {RECHECK_PAUSE_S:.0f}s until clean, for up to {left:.0f}s more")

    def waiting(line: str) -> None:
        if not as_json:
            print(f"verify: {line}")

    try:
        results = verify_until_clean(
            settings, names, open_raw_store, wait_s=wait_s, on_attempt=show, sample=sample, on_wait=waiting,
            incremental=sample is None and not full, record=sample is None,
        )
    except (ConfigurationError, DataLossRisk, BrokenPipeError):
        raise
    except Exception as exc:  # a store or the source that does not answer: not drift, no verdict
        reason = str(exc).splitlines()[0] if str(exc) else ""
        print(f"verify: could not check ({type(exc).__name__}: {reason[:300]})", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    if repair and any(r.total for r in results):
        return print_repair(settings, [r for r in results if r.total], as_json)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            for item in r.samples:
                differs = f"  {describe_diff(item['differs'])}" if "differs" in item else ""
                print(f"  {r.projection}: {item['kind']:<7} {item['collection']}/{item['id']}{differs}")
        for line in verify_notes(results):
            print(line)
    drift = sum(r.total for r in results)
    if not as_json:  # with --json, stdout is the JSON alone
        print("verify: zero drift" if drift == 0 else f"verify: {drift} drifted item(s)")
    return ExitCode.OK if drift == 0 else ExitCode.NOT_DONE


def verify_notes(results: list[Drift]) -> list[str]:
    """What each verdict rests on: the pipeline wait, the store items read, the budget, the sample."""
    lines = []
    for r in results:
        if r.mode == "incremental" and r.checkpoint is not None:
            c = r.checkpoint
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} incremental since the clean verify of {c.as_dict()['at']} "
                f"({c.age_s():.0f}s ago, generation {c.generation}): {r.events} event(s) read, "
                + (f"{r.store_changes} item(s) in the store's change feed, " if r.store_changes else "")
                + f"{r.checked} key(s) checked"
            )
        elif r.full_because is not None:
            lines.append(f"  {r.projection:<{NAME_WIDTH}} full check ({r.full_because})")
        if r.pipeline is not None:
            p = r.pipeline
            state = "caught up" if p.caught_up else f"NOT caught up (lag {p.lag}, capture {p.capture})"
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} pipeline {state} in {p.waited_s:.0f}s (start LSN {p.start_lsn})"
            )
        budget = f", {r.budget_wait_s:.0f}s of it pacing to the read budget" if r.budget_wait_s >= 0.5 else ""
        lines.append(
            f"  {r.projection:<{NAME_WIDTH}} read {r.items_read} store item(s): {r.full_reads} whole-store read(s), "
            f"{r.attempts} attempt(s){budget}" + (f", {r.request_units:,.0f} RU" if r.request_units else "")
            + (f", {r.digests_read} range digest(s) computed by the store" if r.digests_read else "")
        )
        if r.sample is not None:
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} sample {r.sample.fraction:.4g} seed {r.sample.seed}: {r.checked} of "
                f"{r.spec_items} spec items checked"
            )
    if any(r.sample is not None for r in results):
        lines.append(
            "  a sample compares only spec keys: items the store holds and the spec has not (extra) are not "
            "detected, and a clean sample bounds the drift rate only statistically (no drift in n sampled "
            "items: under 3/n at 95% confidence); run without --sample for a full check"
        )
    if any(r.mode == "incremental" for r in results):
        lines.append(
            "  an incremental verify checks only the items events touched since the last clean verify: an "
            "item changed or deleted directly in the store, with no event, is not seen; --full checks all"
        )
    return lines


def print_repair(settings: Settings, drifted: list[Drift], as_json: bool) -> int:
    """Rewrite the keys the verify found drifted, then check exactly those keys again."""
    reports = repair_drifted(settings, drifted)
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    for r in reports if not as_json else []:
        d = r.as_dict()
        print(
            f"  {d['projection']:<{NAME_WIDTH}} repaired {d['drifted']} drifted item(s): {d['rewritten']} rewritten, "
            f"{d['removed']} removed, {d['changed']} changed; drift after repair: {d['driftAfter']}"
        )
    return ExitCode.OK if all(r.clean for r in reports) else ExitCode.NOT_DONE
