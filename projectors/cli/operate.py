"""`projectors status | replay | rebuild | dlq`: operating the projections where they run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from projectors.capture.status_lines import capture_lines
from projectors.cli.common import projection_name, terminal
from projectors.errors import ConfigurationError, RebuildAbandoned, RetriableError
from projectors.exit_codes import ExitCode
from projectors.operations import dlq
from projectors.operations.pause import DEFAULT_PAUSE_TIMEOUT_S, pause, resume
from projectors.operations.rebuild import rebuild
from projectors.operations.replay import replay
from projectors.operations.report import Silent
from projectors.operations.status import gather, render
from projectors.projections import PROJECTION_NAMES
from projectors.settings import Settings
from projectors.stack.local import LocalDeployment


def add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    status = sub.add_parser("status", help=help)
    status.add_argument("projection", nargs="*", type=projection_name, help="default: all")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    status.set_defaults(func=status_command)


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    rows = gather(settings, args.projection or None, LocalDeployment(settings))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        try:
            print("\n".join(capture_lines(settings)))
        except ConfigurationError as exc:  # PostgreSQL does not answer: the projections still show
            print(f"capture: {exc}")
        print("\n".join(render(rows)))
    return ExitCode.OK if all(r.store_up for r in rows) else ExitCode.NOT_DONE


def add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    replay_cmd = sub.add_parser("replay", help=help)
    replay_cmd.add_argument("projection", choices=PROJECTION_NAMES, help="the projection to reprocess")
    replay_cmd.add_argument(
        "--from", dest="start", default="earliest", help="earliest | ISO time | topic:partition:offset,..."
    )
    replay_cmd.add_argument("--force", action="store_true",
                            help="pause the workers through the control topic, reset, resume them")
    replay_cmd.add_argument("--pause-timeout", type=float, default=DEFAULT_PAUSE_TIMEOUT_S,
                            help="wait up to N seconds for the paused group to be empty")
    replay_cmd.add_argument("--wait", type=float, default=600.0, help="follow the progress for up to N seconds")
    replay_cmd.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    progress = replay(
        settings, args.projection, args.start, force=args.force, wait_s=args.wait, report=terminal(),
        pause_timeout_s=args.pause_timeout,
    )
    return ExitCode.OK if progress.done >= progress.total or args.wait == 0 else ExitCode.NOT_DONE


def add_rebuild(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    rebuild_cmd = sub.add_parser("rebuild", help=help)
    rebuild_cmd.add_argument("projection", choices=PROJECTION_NAMES, help="the projection to rebuild")
    rebuild_cmd.add_argument(
        "--force", action="store_true",
        help="pause the workers of the projection for the swap (seconds), through the control topic",
    )
    rebuild_cmd.add_argument("--pause-timeout", type=float, default=DEFAULT_PAUSE_TIMEOUT_S,
                             help="wait up to N seconds for the paused group to be empty")
    rebuild_cmd.add_argument(
        "--verify-wait", type=float, default=120.0, help="keep catching up and verifying for up to N seconds"
    )
    rebuild_cmd.add_argument(
        "--from-topics", action="store_true",
        help="fill the new store by replaying the topics from the beginning (default: from the source's state, "
        "then catch up from the topics)",
    )
    rebuild_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    rebuild_cmd.set_defaults(func=rebuild_command)


def rebuild_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = rebuild(
            settings, args.projection, force=args.force, verify_wait_s=args.verify_wait,
            report=Silent() if args.json else terminal(),
            from_topics=args.from_topics, pause_timeout_s=args.pause_timeout,
        )
    except RebuildAbandoned as exc:
        print(f"projectors: rebuild abandoned: {exc}", file=sys.stderr)
        return ExitCode.NOT_DONE
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return ExitCode.OK


def add_pause(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    control = sub.add_parser("pause", help=help)
    control.add_argument("projection", choices=PROJECTION_NAMES, help="the projection to pause")
    control.add_argument("--timeout", type=float, default=DEFAULT_PAUSE_TIMEOUT_S,
                         help="wait up to N seconds for the group to be empty (default %(default)s)")
    control.set_defaults(func=pause_command)


def add_resume(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    control = sub.add_parser("resume", help=help)
    control.add_argument("projection", choices=PROJECTION_NAMES, help="the projection to resume")
    control.set_defaults(func=resume_command)


def pause_command(args: argparse.Namespace, settings: Settings) -> int:
    pause(settings, args.projection, args.timeout, print)  # PauseTimeout: exit 4, naming the members
    return ExitCode.OK


def resume_command(args: argparse.Namespace, settings: Settings) -> int:
    resume(settings, args.projection, print)
    return ExitCode.OK


def add_dlq(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    dlq_cmd = sub.add_parser("dlq", help=help)
    dlq_cmd.add_argument("action", choices=("list", "show", "redrive"), help="what to do with the dead letters")
    dlq_cmd.add_argument("ids", nargs="*", help="dead letter ids: <projection>:<partition>:<offset>")
    dlq_cmd.add_argument("--projection", choices=PROJECTION_NAMES, help="only this projection's dead letters")
    dlq_cmd.add_argument("--all", action="store_true", help="redrive every dead letter not redriven yet")
    dlq_cmd.add_argument("--value-file", help="redrive one letter with this corrected value (JSON file)")
    dlq_cmd.set_defaults(func=dlq_command)


def dlq_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "list":
            found = dlq.letters(settings, args.projection)
            for letter in found:
                print(letter.summary())
            print(f"{len(found)} dead letter(s) (one per origin; {sum(x.times for x in found)} written), "
                  f"{sum(not x.redriven for x in found)} not redriven")
            return ExitCode.OK
        if args.action == "show":
            if not args.ids:
                print("projectors: error: dlq show needs a dead letter id (see `projectors dlq list`)",
                      file=sys.stderr)
                return ExitCode.CONFIGURATION
            for letter in dlq.choose(settings, args.ids):
                print(dlq.as_json(letter))
            return ExitCode.OK
        value = Path(args.value_file).read_bytes() if args.value_file else None
        chosen = dlq.to_redrive(settings, args.ids, args.all, args.projection, value)
        results = dlq.redrive(settings, chosen, value)
    except RetriableError as exc:  # the dead-letter topics were not read to their end in time
        print(f"projectors: dlq {args.action}: {exc}", file=sys.stderr)
        return ExitCode.NOT_DONE
    for letter_id, result in results.items():
        print(f"{letter_id}: {result}")
    return ExitCode.OK if all(r == "applied" for r in results.values()) else ExitCode.NOT_DONE
