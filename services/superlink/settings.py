"""SuperLinkSettings: what `stamen-superlink` is told, validated once at the edge.

The CLI fills it from flags and their `STAMEN_*` environment variables (click reads
those: `STAMEN_FLEET_API_ADDRESS`, `STAMEN_CERTIFICATES`, ...); `serve()` takes it as is.
`describe` turns a validation failure into the one line the CLI prints, naming the flag.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from stamen.common.bundle import MAX_BUNDLE_SIZE
from stamen.common.fields import Address, HttpAddress, LogLevel, describe_invalid
from stamen.common.logging import LogFormat

from .deliveries import DEFAULT_DELIVERY_LEASE
from .leases import DEFAULT_RUN_LEASE

__all__ = ["Certificates", "SuperLinkSettings", "describe"]


class Certificates(BaseModel):
    """The SuperLink's TLS files: the CA its clients trust, its certificate and key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca: Path
    cert: Path
    key: Path


class SuperLinkSettings(BaseModel):
    """A SuperLink's settings (see `stamen-superlink --help` for each one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fleet_api_address: Address = "0.0.0.0:9092"
    serverappio_api_address: Address = "127.0.0.1:9091"
    """The operator APIs stay on this host unless told otherwise (then a warning says so,
    without --auth-operator-tokens): the ServerApp runner and the CLI are local."""
    control_api_address: Address = "127.0.0.1:9093"
    insecure: bool = False
    certificates: Certificates | None = None
    database: str = "stamen-superlink.db"
    """An SQLite file that keeps state across restarts; ":memory:" keeps nothing."""
    heartbeat_interval: float = Field(default=5.0, gt=0)
    max_bundle_size: float = Field(default=MAX_BUNDLE_SIZE / 2**20, gt=0, allow_inf_nan=False)
    """MiB: the largest app bundle a run may be submitted with."""
    run_lease: float = Field(default=DEFAULT_RUN_LEASE, gt=0)
    """Seconds a ServerApp runner's hold on its run lasts unrenewed (see `leases`)."""
    delivery_lease: float = Field(default=DEFAULT_DELIVERY_LEASE, gt=0)
    """Seconds a pulled, unanswered instruction waits before it is handed out again
    (see `deliveries`)."""
    grace_period: float = Field(default=5.0, ge=0)
    """Seconds a shutdown waits for calls in flight before it cancels them."""
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    metrics_address: HttpAddress | None = None
    """Where to serve Prometheus' `/metrics`; off when None."""
    dashboard_address: HttpAddress | None = None
    """Where to serve the dashboard; off when None."""
    enable_supernode_auth: bool = False
    """Admit only SuperNodes whose key is listed in `auth_list_public_keys`."""
    auth_list_public_keys: Path | None = None
    auth_operator_tokens: Path | None = None
    """A file of `NAME:SHA256` lines: Control and ServerAppIo then require a bearer token."""
    allow_unauthenticated_operators: bool = False
    """TLS without operator tokens: Control and ServerAppIo open to whoever reaches them.
    Local development only; without it a TLS SuperLink refuses to start with no tokens."""

    @model_validator(mode="after")
    def _one_way_to_serve(self) -> SuperLinkSettings:
        if self.insecure == (self.certificates is not None):
            raise ValueError(
                "pass exactly one of --certificates CA CERT KEY (TLS) and --insecure (plaintext)"
            )
        if self.enable_supernode_auth != (self.auth_list_public_keys is not None):
            raise ValueError(
                "--enable-supernode-auth and --auth-list-public-keys FILE go together: pass both"
            )
        if self.auth_operator_tokens is not None and self.insecure:
            raise ValueError(
                "--auth-operator-tokens needs TLS (--certificates): over --insecure the "
                "tokens would travel in the clear"
            )
        _operators_authenticated(self)
        return self


def _operators_authenticated(settings: SuperLinkSettings) -> None:
    """With TLS, Control and ServerAppIo need operator tokens unless explicitly opened."""
    if settings.allow_unauthenticated_operators:
        if settings.auth_operator_tokens is not None:
            raise ValueError(
                "--allow-unauthenticated-operators and --auth-operator-tokens exclude each "
                "other: pass one"
            )
        if settings.insecure:
            raise ValueError(
                "--allow-unauthenticated-operators goes with --certificates: --insecure "
                "already leaves Control and ServerAppIo open"
            )
    elif settings.certificates is not None and settings.auth_operator_tokens is None:
        raise ValueError(
            "with TLS, Control and ServerAppIo require operator credentials: pass "
            "--auth-operator-tokens FILE (`make keys` makes one), or "
            "--allow-unauthenticated-operators for local development"
        )


def describe(error: ValidationError) -> str:
    """The first problem in `error`, as one line that names the flag."""
    return describe_invalid(error)
