"""SuperNodeSettings: what `stamen-supernode` is told, validated once at the edge.

The CLI fills it from flags and `STAMEN_*` environment variables; everything past the CLI
gets plain, checked values. `describe` turns a validation failure into the one line
the CLI prints, naming the flag to fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from stamen.common.fields import (
    Address,
    ExistingDirectory,
    LogLevel,
    UserConfigText,
    describe_invalid,
)

__all__ = ["DEFAULT_SERVER", "SuperNodeSettings", "describe"]

DEFAULT_SERVER = "127.0.0.1:9092"

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

_FLAGS = {"app": "APP", "directory": "--dir"}


class SuperNodeSettings(BaseModel):
    """A SuperNode's settings (see `stamen-supernode --help` for each one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app: str
    server: Address = DEFAULT_SERVER
    root_certificates: Path | None = None
    insecure: bool = False
    node_config: UserConfigText = Field(default_factory=dict)
    directory: ExistingDirectory = Path()
    isolation: Literal["process", "thread"] = "process"
    max_retries: int | None = Field(default=None, ge=0)
    max_wait_time: float | None = Field(default=None, gt=0)
    log_level: LogLevel = "INFO"
    auth_supernode_private_key: Path | None = None
    """The node's private key: it signs every Fleet request (node authentication)."""

    @field_validator("app")
    @classmethod
    def _app_reference(cls, value: str) -> str:
        if not _REFERENCE.fullmatch(value):
            raise ValueError(f"{value!r} is not a 'module:attribute' reference (like client:app)")
        return value

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> SuperNodeSettings:
        if self.insecure == (self.root_certificates is not None):
            raise ValueError(
                "pass exactly one of --root-certificates CA (TLS) and --insecure (plaintext)"
            )
        return self


def describe(error: ValidationError) -> str:
    """The first problem in `error`, as one line that names the flag."""
    return describe_invalid(error, _FLAGS)
