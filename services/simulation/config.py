"""BackendConfig: how many workers a simulation runs, and what each client may use.

Flower's shape, validated once at the edge (pydantic) and passed inward frozen:

    {"num_workers": 2, "client_resources": {"num_cpus": 1, "num_gpus": 0.25}}

`parse_backend_config` takes what users write (a dict, a JSON string, or the path of a
JSON file) and turns every problem into one ConfigError line that names the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stamen.common.errors import ConfigError

__all__ = ["BackendConfig", "ClientResources", "parse_backend_config"]


class ClientResources(BaseModel):
    """What one ClientApp call may use; fractions let several share a CPU or a GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)


class BackendConfig(BaseModel):
    """The worker pool's shape: `num_workers` (default: one per usable CPU, as many as
    `client_resources` allow)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_workers: int | None = Field(default=None, ge=1)
    client_resources: ClientResources = ClientResources()


def parse_backend_config(raw: BackendConfig | Mapping[str, Any] | str | None) -> BackendConfig:
    """A BackendConfig from a model, a mapping, JSON text or a JSON file's path (None:
    the defaults). ConfigError, one line, when it is not one."""
    if raw is None:
        return BackendConfig()
    if isinstance(raw, BackendConfig):
        return raw
    if isinstance(raw, str):
        raw = _load_json(raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"backend config: expected a JSON object, got {type(raw).__name__}")
    try:
        return BackendConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"backend config: {_describe(exc)}") from None


def _load_json(text: str) -> Any:
    stripped = text.strip()
    source = "backend config"
    if stripped and not stripped.startswith(("{", "[")):
        path = Path(stripped).expanduser()
        try:
            stripped = path.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"backend config: {text!r} is neither JSON nor a readable file ({reason})"
            ) from None
        source = f"backend config file {str(path)!r}"
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def _describe(error: ValidationError) -> str:
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown key (known: num_workers, client_resources.num_cpus, .num_gpus)"
    return f"{location}: {message}" if location else message
