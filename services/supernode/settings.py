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
    HttpAddress,
    LogLevel,
    UserConfigText,
    describe_invalid,
)
from stamen.common.logging import LogFormat
from stamen.common.trust import parse_bundle_pin

__all__ = ["DEFAULT_BUNDLE_CACHE", "DEFAULT_SERVER", "SuperNodeSettings", "describe"]

DEFAULT_SERVER = "127.0.0.1:9092"

DEFAULT_BUNDLE_CACHE = Path.home() / ".cache" / "stamen" / "bundles"
"""Where a node without a fixed app unpacks the app bundles of the runs it serves."""

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

_FLAGS = {
    "app": "APP",
    "directory": "--dir",
    "trusted_entities": "--trusted-entities",
    "allow_bundles": "--allow-bundle",
}


class SuperNodeSettings(BaseModel):
    """A SuperNode's settings (see `stamen-supernode --help` for each one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app: str | None = None
    """None: no fixed app; each run's app comes from its bundle (see BundleExecutor)."""
    bundle_cache: Path = Field(default_factory=lambda: DEFAULT_BUNDLE_CACHE)
    trusted_entities: Path | None = None
    """Without APP: run only bundles signed by a publisher it lists (stamen.common.trust)."""
    allow_bundles: tuple[str, ...] = ()
    """Without APP: run only these bundles (sha256 hex); any when empty."""
    server: Address = DEFAULT_SERVER
    root_certificates: Path | None = None
    insecure: bool = False
    node_config: UserConfigText = Field(default_factory=dict)
    directory: ExistingDirectory = Path()
    isolation: Literal["process", "thread"] = "process"
    max_retries: int | None = Field(default=None, ge=0)
    max_wait_time: float | None = Field(default=None, gt=0)
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    metrics_address: HttpAddress | None = None
    """Where to serve Prometheus' `/metrics`; off when None."""
    auth_supernode_private_key: Path | None = None
    """The node's private key: it signs every Fleet request (node authentication)."""

    @field_validator("app")
    @classmethod
    def _app_reference(cls, value: str | None) -> str | None:
        if value is not None and not _REFERENCE.fullmatch(value):
            raise ValueError(f"{value!r} is not a 'module:attribute' reference (like client:app)")
        return value

    @field_validator("allow_bundles", mode="before")
    @classmethod
    def _bundle_pins(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(parse_bundle_pin(str(pin)) for pin in value)
        return value

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> SuperNodeSettings:
        if self.insecure == (self.root_certificates is not None):
            raise ValueError(
                "pass exactly one of --root-certificates CA (TLS) and --insecure (plaintext)"
            )
        if self.app is None and self.isolation == "thread":
            raise ValueError("--isolation thread needs an APP (a node without one runs each "
                             "run's bundle in a worker process)")  # fmt: skip
        if self.app is not None and (self.trusted_entities or self.allow_bundles):
            raise ValueError("--trusted-entities and --allow-bundle apply to a node without "
                             "an APP (one with an APP runs only that app)")  # fmt: skip
        return self


def describe(error: ValidationError) -> str:
    """The first problem in `error`, as one line that names the flag."""
    return describe_invalid(error, _FLAGS)
