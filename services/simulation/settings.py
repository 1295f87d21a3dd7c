"""SimulationSettings: what `stamen-simulation` is told, validated once at the edge.

The CLI fills it from flags and `STAMEN_*` environment variables; `describe` turns a
validation failure into the one line the CLI prints, naming the flag to fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from stamen.common.errors import ConfigError
from stamen.common.fields import (
    ExistingDirectory,
    HttpAddress,
    LogLevel,
    OutputDirectory,
    UserConfigText,
    WritableFile,
    describe_invalid,
)
from stamen.common.logging import LogFormat

from .config import BackendConfig, parse_backend_config

__all__ = ["SimulationSettings", "describe"]

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

_FLAGS = {"directory": "--dir"}


class SimulationSettings(BaseModel):
    """A simulation's settings (see `stamen-simulation --help` for each one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_app: str
    client_app: str
    num_supernodes: int = Field(ge=1)
    backend_config: BackendConfig = BackendConfig()
    run_config: UserConfigText = Field(default_factory=dict)
    seed: int | None = None
    directory: ExistingDirectory = Path()
    output_dir: OutputDirectory | None = None
    save_final_arrays: WritableFile | None = None
    dashboard_address: HttpAddress | None = None
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"

    @field_validator("server_app", "client_app")
    @classmethod
    def _app_reference(cls, value: str) -> str:
        if not _REFERENCE.fullmatch(value):
            raise ValueError(f"{value!r} is not a 'module:attribute' reference (like client:app)")
        return value

    @field_validator("backend_config", mode="before")
    @classmethod
    def _parse_backend_config(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            return value
        try:
            return parse_backend_config(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("backend config: ")) from None


def describe(error: ValidationError) -> str:
    """The first problem in `error`, as one line that names the flag."""
    return describe_invalid(error, _FLAGS)
