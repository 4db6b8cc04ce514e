"""`projectors schemas` and `projectors generate`: the files derived from the code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from projectors import generated, schemas
from projectors.capture.connector import connect_file_path, render_connect_file
from projectors.exit_codes import ExitCode
from projectors.settings import Settings


def add_schemas(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    schemas_cmd = sub.add_parser("schemas", help=help)
    schemas_cmd.add_argument("action", choices=("write", "check"), help="write the files, or list those that differ")
    schemas_cmd.add_argument("--dir", default=None, help="default: the repository's schemas/")
    schemas_cmd.set_defaults(func=schemas_command)


def schemas_command(args: argparse.Namespace, settings: Settings) -> int:
    root = Path(args.dir) if args.dir else schemas.SCHEMAS_DIR
    if args.action == "check":
        stale = schemas.drift(root)
        for name in stale:
            print(f"{root / name} differs from the models: run `projectors schemas write`", file=sys.stderr)
        return ExitCode.NOT_DONE if stale else ExitCode.OK
    for name in schemas.write(root) or ["(all up to date)"]:
        print(f"wrote {root / name}" if not name.startswith("(") else name)
    return ExitCode.OK


def add_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    generate = sub.add_parser("generate", help=help)
    generate.add_argument("--check", action="store_true", help="only list the files that differ; exit 1 if any")
    generate.set_defaults(func=generate_command)


def generate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Every file derived from the projections' descriptors and the code: the schemas, the Kafka
    Connect connector file, the workers' deploy files, the docs' generated tables."""
    connector, connector_text = connect_file_path(), render_connect_file(settings.capture)
    root = generated.ROOT
    if args.check:
        stale = [f"schemas/{name}" for name in schemas.drift(schemas.SCHEMAS_DIR)] + generated.stale()
        if not connector.exists() or connector.read_text() != connector_text:
            stale.append(str(connector.relative_to(root)))
        for name in stale:
            print(f"{name} differs from what the code gives: run `projectors generate`", file=sys.stderr)
        return ExitCode.NOT_DONE if stale else ExitCode.OK
    written = [f"schemas/{name}" for name in schemas.write(schemas.SCHEMAS_DIR)] + generated.write()
    if not connector.exists() or connector.read_text() != connector_text:
        connector.write_text(connector_text)
        written.append(str(connector.relative_to(root)))
    for name in written or ["(all up to date)"]:
        print(f"wrote {name}" if written else name)
    return ExitCode.OK
