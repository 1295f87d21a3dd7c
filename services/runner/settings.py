"""ServerAppSettings: the runner's flags and STAMEN_* variables, validated once."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from stamen.common.config import split_address
from stamen.common.errors import ConfigError
from stamen.common.fields import Address, LogLevel, UserConfigText, WritableFile
from stamen.common.logging import LogFormat
from stamen.transport.grpc.guard import operator_token
from stamen.transport.grpc.tls import client_context

__all__ = ["DEFAULT_FLEET_PORT", "DEFAULT_SERVER", "ServerAppSettings"]

DEFAULT_SERVER = "127.0.0.1:9091"
"""The SuperLink's ServerAppIo API on this machine."""
DEFAULT_FLEET_PORT = 9092
"""The SuperLink's Fleet API port, unless it was started with another."""


class ServerAppSettings(BaseModel):
    """What `stamen-serverapp` runs, where, and how it connects.

    Validators raise ConfigError (a UserInputError) with one line a person can act on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    app: str
    server: Address = DEFAULT_SERVER
    root_certificates: Path | None = None
    insecure: bool = False
    run_config: UserConfigText = Field(default_factory=dict)
    run_id: int | None = Field(default=None, gt=0)
    resume: int | None = Field(default=None, gt=0)
    directory: Path = Path(".")
    output_dir: Path | None = None
    log_level: LogLevel = "INFO"
    max_wait_time: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    round_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    node_wait_timeout: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    fleet_address: Address | None = None
    save_final_arrays: WritableFile | None = None
    log_format: LogFormat = "text"
    operator_token_file: Path | None = None

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> ServerAppSettings:
        if self.run_id is not None and self.resume is not None:
            raise ConfigError("--run-id and --resume exclude each other: pass one")
        if self.insecure and self.root_certificates is not None:
            raise ConfigError("--insecure and --root-certificates exclude each other: pass one")
        if not self.insecure and self.root_certificates is None:
            raise ConfigError(
                "pass --root-certificates CA (the CA that signed the SuperLink's certificate) "
                "or, for a SuperLink started with --insecure, --insecure"
            )
        if self.root_certificates is not None:
            client_context(self.root_certificates)  # unreadable or not PEM: ConfigError now
        token = operator_token(self.operator_token_file)  # the same, for the token
        if self.insecure and self.operator_token_file is not None and token:
            raise ConfigError(
                "--operator-token-file needs TLS (--root-certificates): over --insecure the "
                "token would travel in the clear"
            )
        return self

    @property
    def nodes_connect_to(self) -> str:
        """The Fleet address SuperNodes should use: --fleet-address, else the SuperLink's
        host (from --server) with the default Fleet port."""
        if self.fleet_address is not None:
            return self.fleet_address
        host, _ = split_address(self.server)
        return f"[{host}]:{DEFAULT_FLEET_PORT}" if ":" in host else f"{host}:{DEFAULT_FLEET_PORT}"
