"""`projectors worker <projection>`: one faust worker of one projection."""

from __future__ import annotations

import argparse
import signal

from projectors.exit_codes import ExitCode
from projectors.projections import PROJECTION_NAMES
from projectors.runtime.projector_process import die_with_parent
from projectors.runtime.supervisor import supervise
from projectors.runtime.worker import run_worker
from projectors.settings import Settings


def add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    worker = sub.add_parser("worker", help=help)
    worker.add_argument("projection", choices=PROJECTION_NAMES, help="the projection this worker projects")
    # the faust worker itself, as the process following the control topic runs it
    worker.add_argument("--no-control", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--client-id", default=None, help=argparse.SUPPRESS)
    worker.set_defaults(func=worker_command)


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    """The worker follows the control topic (``runtime/supervisor.py``) and runs the faust worker as a
    child process while its projection is not paused; ``--no-control`` is that child."""
    if args.no_control:
        # the process that follows the control topic killed (SIGKILL, OOM): this worker stops as on
        # SIGTERM, its batch written and its group left, instead of running on without control
        die_with_parent(signal.SIGTERM)
        run_worker(settings, args.projection, loglevel="debug" if args.verbose else "info", client_id=args.client_id)
        return ExitCode.OK
    return supervise(settings, args.projection, verbose=args.verbose)
