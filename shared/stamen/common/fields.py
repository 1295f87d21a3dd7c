"""Setting types every service's settings share, validated once at the edge (pydantic).

Each raises ValueError with one line a person can act on; the CLIs turn pydantic's
ValidationError into that line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

from .config import parse_user_config
from .errors import ConfigError
from .records import UserConfig

__all__ = ["ExistingDirectory", "LogLevel", "UserConfigText"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _user_config(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return parse_user_config(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _existing_directory(value: Path) -> Path:
    if not value.is_dir():
        raise ValueError(f"{str(value)!r} is not a directory")
    return value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
"""A log level name, in any case."""

UserConfigText = Annotated[UserConfig, BeforeValidator(_user_config)]
"""A run or node config: a dict, or flag text like 'num-server-rounds=3 lr=0.1'."""

ExistingDirectory = Annotated[Path, AfterValidator(_existing_directory)]
"""A folder that exists (where an app is imported from)."""
