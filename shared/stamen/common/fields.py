"""Setting types every service's settings share, validated once at the edge (pydantic).

Each raises ValueError with one line a person can act on; the CLIs turn pydantic's
ValidationError into that line (`describe_invalid`) and exit code 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ValidationError

from .config import parse_user_config, split_address
from .errors import ConfigError
from .records import UserConfig

__all__ = [
    "Address",
    "ExistingDirectory",
    "HttpAddress",
    "LogLevel",
    "OutputDirectory",
    "UserConfigText",
    "WritableFile",
    "describe_invalid",
]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _user_config(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return parse_user_config(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _address(value: str) -> str:
    try:
        split_address(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


def _loopback_by_default(value: Any) -> Any:
    """'9100' and ':9100' mean 127.0.0.1:9100: what is served is private unless asked."""
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip(":").isdigit()):
        return f"127.0.0.1:{str(value).lstrip(':')}"
    return value


def _existing_directory(value: Path) -> Path:
    if not value.is_dir():
        raise ValueError(f"{str(value)!r} is not a directory")
    return value


def _output_directory(value: Path) -> Path:
    if value.exists() and not value.is_dir():
        raise ValueError(f"{str(value)!r} exists and is not a directory")
    return value


def _writable_file(value: Path) -> Path:
    """Write and remove `<value>.part`, as the atomic writers of results do: a missing
    folder or a read-only one is found before a run, not after it."""
    if value.is_dir():
        raise ValueError(f"cannot write {str(value)!r}: it is a directory")
    probe = value.with_name(value.name + ".part")
    try:
        with probe.open("wb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write {str(value)!r}: {exc.strerror or exc}") from None
    return value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
"""A log level name, in any case."""

UserConfigText = Annotated[UserConfig, BeforeValidator(_user_config)]
"""A run or node config: a dict, or flag text like 'num-server-rounds=3 lr=0.1'."""

ExistingDirectory = Annotated[Path, AfterValidator(_existing_directory)]
"""A folder that exists (where an app is imported from)."""

OutputDirectory = Annotated[Path, AfterValidator(_output_directory)]
"""A folder to write results into: made when missing, refused when a file is in the way."""

WritableFile = Annotated[Path, AfterValidator(_writable_file)]
"""A file to write (replaced if it exists) in a folder that exists and may be written."""

Address = Annotated[str, AfterValidator(_address)]
"""`HOST:PORT` (or `[v6]:PORT`), to listen on or to connect to."""

HttpAddress = Annotated[str, BeforeValidator(_loopback_by_default), AfterValidator(_address)]
"""Where to serve HTTP (metrics, dashboard): `HOST:PORT`, or a port alone for 127.0.0.1."""


def describe_invalid(error: ValidationError, flags: Mapping[str, str] | None = None) -> str:
    """The first problem in `error` as one line naming its flag: `--max-wait-time: ...`.

    `flags` names the fields whose flag is not `--` plus the field's name (`APP`, `--dir`).
    """
    problem = error.errors()[0]
    location = [str(part) for part in problem["loc"]]
    message = problem["msg"].removeprefix("Value error, ")
    if not location:
        return message
    field = location[0]
    return f"{(flags or {}).get(field, '--' + field.replace('_', '-'))}: {message}"
