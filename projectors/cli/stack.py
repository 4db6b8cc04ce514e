"""`projectors stack up | down | status` and `projectors demo`: the local stack."""

from __future__ import annotations

import argparse
import json
import time

from projectors.cli.source import print_topics, write_sample
from projectors.cli.verify import run_verify
from projectors.exit_codes import ExitCode
from projectors.projections import DESCRIPTORS
from projectors.read.showcase import showcase
from projectors.settings import Settings
from projectors.stack import local


def add_stack(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    stack = sub.add_parser("stack", help=help)
    stack.add_argument("action", choices=("up", "down", "status"), help="start, stop, or show each part")
    stack.add_argument("--only", help="comma-separated parts (postgres,broker,falkordb,cosmos,cosmos-counters,...)")
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(func=stack_command)


def stack_command(args: argparse.Namespace, settings: Settings) -> int:
    names = args.only.split(",") if args.only else list(local.ORDER)
    if args.action == "up":
        print(f"starting the local stack in {settings.stack.dir.absolute()}")
        started = time.monotonic()
        local.up(settings, names)
        print(f"stack up in {time.monotonic() - started:.1f}s; logs in {settings.stack.dir.absolute() / 'logs'}")
    elif args.action == "down":
        local.down(settings, names)
    else:
        rows = local.status(settings)
        if args.json:
            print(json.dumps(
                [{"name": r.name, "up": r.up, "address": r.address, "pid": r.pid, "log": str(r.log)} for r in rows],
                indent=2,
            ))
        else:
            for line in local.status_lines(rows):
                print(line)
        return ExitCode.OK if all(r.up for r in rows) else ExitCode.NOT_DONE
    return ExitCode.OK


def add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    sub.add_parser("demo", help=help).set_defaults(func=demo)


def demo(args: argparse.Namespace, settings: Settings) -> int:
    print("== 1. local stack: PostgreSQL, broker, FalkorDB, one Cosmos REST server per Cosmos account, capture, "
          f"a worker per projection ({len(DESCRIPTORS)})")
    started = time.monotonic()
    local.up(settings)
    print(f"   stack up in {time.monotonic() - started:.1f}s")
    print("== 2. sample social activity into PostgreSQL")
    write_sample(settings, users=30, operations=400, seed=None)
    print("== 3. change events on the topics")
    print_topics(settings, show=6, timeout_s=60.0)
    print("== 4. the projections, verified against PostgreSQL")
    status = run_verify(settings, [], wait_s=180.0)
    print("== 5. what read services see")
    for line in showcase(settings):
        print(line)
    print("\nThe stack is still running: `projectors stack status`, `projectors stack down`.")
    return status
