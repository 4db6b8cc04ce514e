"""How a group of settings is read from the environment and checked: :class:`Section` (one
environment prefix, ``<NAME>_FILE`` for secrets, a message naming the variable on a bad value) and
the checks the groups share (absolute paths, ports, empty values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

ENV_PREFIX = "PROJECTORS_"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class Section(BaseModel):
    """A group of settings sharing one environment prefix."""

    # durations and sizes are finite numbers: "inf" or "nan" is a bad setting, named at start
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    env_section: ClassVar[str] = ""

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{ENV_PREFIX}{cls.env_section}{field}".upper()

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Any:
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            var = cls.env_name(name)
            if var in environ:
                values[name] = environ[var]
            elif environ.get(f"{var}_FILE"):  # ``NAME_FILE=`` (empty, as in an env file): not given
                path = Path(environ[f"{var}_FILE"])
                try:
                    values[name] = path.read_text().strip()
                except OSError as exc:
                    raise SettingsError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from exc
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                shown = "<secret>" if "password" in field or "key" in field else err.get("input")
                problems.append(f"{cls.env_name(field)}={shown!r}: {err['msg']}")
            raise SettingsError("invalid setting " + "; ".join(problems)) from None


def absolute_path(value: Path | None) -> Path | None:
    """A data path is absolute (``~`` is expanded): a relative one would name another folder in
    each working directory, and every process of the stack (a worker, a read service, an operator
    tool run from elsewhere) must find the same files."""
    if value is None:
        return None
    value = value.expanduser()
    if not value.is_absolute():
        raise ValueError("expected an absolute path (a relative one depends on the working directory)")
    return value


def empty_is_unset(value: object) -> object:
    """An empty value (``NAME=`` in an env file) leaves an optional path unset."""
    return None if value == "" else value


def default_stack_dir() -> Path:
    """The project's ``.stack`` folder: in the source checkout this package runs from (where
    ``./scripts/setup`` put the virtualenv), whatever the working directory. A package installed
    without its checkout uses ``~/.local/share/projectors/stack``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "scripts" / "setup").is_file():
        return checkout / ".stack"
    return Path.home() / ".local" / "share" / "projectors" / "stack"


def tcp_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port is a number from 1 to 65535")
    return value
