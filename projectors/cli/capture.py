"""`projectors capture`, `projectors connector`, `projectors config check`: capture and its settings."""

from __future__ import annotations

import argparse
import sys

from projectors import settings_reference
from projectors.capture.connector import connect_file_path, render_connect_file
from projectors.capture.recovery import recover_slot
from projectors.capture.runner import reset_capture, supervise_capture
from projectors.capture.validation import DEBEZIUM_VERSION, check_connector
from projectors.cli.common import terminal
from projectors.exit_codes import ExitCode
from projectors.operations.rebuild import rebuild
from projectors.settings import SECTIONS, Settings


def add_capture(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    capture = sub.add_parser("capture", help=help)
    capture.add_argument(
        "--reset", action="store_true", help="forget offsets and drop the slot: the next start takes a new snapshot"
    )
    capture.add_argument(
        "--recover-slot", action="store_true",
        help="after a lost slot: a new slot (snapshot position), capture's state set to it, every projection "
        "rebuilt from the source's state",
    )
    capture.set_defaults(func=capture_command)


def capture_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.reset:
        for line in reset_capture(settings) or ["nothing to reset"]:
            print(line)
        return ExitCode.OK
    if args.recover_slot:
        def rebuild_one(s: Settings, name: str) -> object:
            print(f"rebuilding {name} from the source's state ...", flush=True)
            return rebuild(s, name, force=True, report=terminal())

        for line in recover_slot(settings, rebuild_one):
            print(line)
        return ExitCode.OK
    supervise_capture(settings)
    return ExitCode.OK


def add_connector(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    connector = sub.add_parser("connector", help=help)
    connector.add_argument("action", choices=("render",), help="write the file (or compare it, with --check)")
    connector.add_argument("--check", action="store_true", help="fail if the file differs from the rendering")
    connector.set_defaults(func=connector_command)


def connector_command(args: argparse.Namespace, settings: Settings) -> int:
    text = render_connect_file(settings.capture)
    path = connect_file_path()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} differs from the rendered connector config: run `projectors connector render`",
                  file=sys.stderr)
            return ExitCode.NOT_DONE
        print(f"{path} is up to date")
        return ExitCode.OK
    path.write_text(text)
    print(f"wrote {path}")
    return ExitCode.OK


def add_config(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    config = sub.add_parser("config", help=help)
    config.add_argument("action", choices=("check", "reference"),
                        help="check: print and validate the settings; reference: write docs/settings.md")
    config.add_argument("--check", action="store_true", help="reference: fail if docs/settings.md is stale")
    config.add_argument("--no-connector", action="store_true",
                        help="skip the connector validation (it starts a JVM: a few seconds)")
    config.set_defaults(func=config_command)


def config_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "reference":
        if args.check:
            if settings_reference.stale():
                print(f"{settings_reference.REFERENCE} is stale: run `projectors config reference`", file=sys.stderr)
                return ExitCode.NOT_DONE
            print(f"{settings_reference.REFERENCE} is up to date")
            return ExitCode.OK
        print(f"wrote {settings_reference.write()}")
        return ExitCode.OK
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for field in cls.model_fields:
            value = getattr(section, field)
            shown = "**********" if hasattr(value, "get_secret_value") else value
            print(f"{cls.env_name(field)}={shown}")
    if args.no_connector:
        return ExitCode.OK
    check = check_connector(settings)
    if check.unreachable:
        print(f"projectors: note: the connector could not reach PostgreSQL ({'; '.join(check.unreachable)})",
              file=sys.stderr)
    if check.errors:
        print(f"projectors: the Debezium {DEBEZIUM_VERSION} connector rejects its settings:\n"
              + "\n".join(check.lines()), file=sys.stderr)
        return ExitCode.CONFIGURATION
    print(f"# the Debezium {DEBEZIUM_VERSION} PostgreSQL connector accepts its properties")
    return ExitCode.OK
