"""Federations: where `stamen run` sends an app, read from the app's pyproject.toml.

    [tool.stamen.federations]                 (or [tool.flwr.federations])
    default = "local-simulation"

    [tool.stamen.federations.local-simulation]
    options.num-supernodes = 10               no address: a simulation on this machine

    [tool.stamen.federations.remote]
    address = "superlink.example.org:9093"    the SuperLink's Control API
    root-certificates = "certs/ca.crt"        relative to the app folder; or insecure = true
    operator-token-file = "keys/operator.token"   for a SuperLink that requires tokens

The tools that only talk to a SuperLink (`ls`, `log`, `stop`, `pull`) take the same
federation, or `--superlink HOST:PORT` with `--root-certificates`/`--insecure`. Every
command may name the operator token with `--operator-token-file` (see `control.py`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stamen.common.config import flatten_dict, split_address
from stamen.common.errors import ConfigError
from stamen.common.project import AppProject

__all__ = ["Federation", "direct_federation", "resolve_federation", "with_operator_token"]


@dataclass(frozen=True, slots=True)
class Federation:
    """A named place to run an app: a SuperLink's Control API, or a local simulation."""

    name: str
    address: str | None = None
    root_certificates: Path | None = None
    insecure: bool = False
    operator_token_file: Path | None = None
    """The operator's bearer token for Control (None: $STAMEN_OPERATOR_TOKEN, if set)."""
    options: dict[str, Any] = field(default_factory=dict)
    """A simulation's options, flattened (`num-supernodes`, `backend.num_workers`...)."""

    @property
    def is_simulation(self) -> bool:
        return self.address is None


def resolve_federation(project: AppProject, name: str | None) -> Federation:
    """The federation `name` (or the default one) of `project`; ConfigError says why not."""
    table = dict(project.federations)
    where = f"[tool.stamen.federations] of {project.path or project.directory}"
    if name is None:
        default = table.get("default")
        if not isinstance(default, str):
            raise ConfigError(f"name a FEDERATION: {where} sets no default")
        name = default
    known = sorted(k for k, v in table.items() if isinstance(v, dict))
    entry = table.get(name)
    if not isinstance(entry, dict):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        raise ConfigError(f"no federation {name!r} in {where}{hint}")
    return _federation(name, entry, project.directory)


def direct_federation(address: str, root_certificates: Path | None, insecure: bool) -> Federation:
    """A SuperLink named on the command line (`--superlink`)."""
    return _checked(Federation("--superlink", address, root_certificates, insecure))


def with_operator_token(federation: Federation, path: Path | None) -> Federation:
    """`federation` with the token file of `--operator-token-file` (None: as it is)."""
    if path is None:
        return federation
    return _checked(dataclasses.replace(federation, operator_token_file=path))


def _federation(name: str, entry: dict[str, Any], directory: Path) -> Federation:
    address = entry.get("address")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"federation {name!r}: options must be a table")
    if address is None:
        try:
            flat = flatten_dict(options)
        except ValueError as exc:
            raise ConfigError(f"federation {name!r}: {exc}") from None
        if "num-supernodes" not in flat:
            raise ConfigError(
                f"federation {name!r} has no address (a SuperLink's Control API) and no "
                "options.num-supernodes (a local simulation): give it one of them"
            )
        return Federation(name, options=flat)
    if not isinstance(address, str):
        raise ConfigError(f"federation {name!r}: address must be a 'HOST:PORT' string")
    certificates = entry.get("root-certificates")
    if certificates is not None and not isinstance(certificates, str):
        raise ConfigError(f"federation {name!r}: root-certificates must be a path")
    insecure = entry.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"federation {name!r}: insecure must be true or false")
    token_file = entry.get("operator-token-file")
    if token_file is not None and not isinstance(token_file, str):
        raise ConfigError(f"federation {name!r}: operator-token-file must be a path")
    return _checked(
        Federation(
            name,
            address,
            _relative(directory, certificates),
            insecure,
            operator_token_file=_relative(directory, token_file),
        )
    )


def _relative(directory: Path, path: str | None) -> Path | None:
    return None if path is None else directory / Path(path).expanduser()


def _checked(federation: Federation) -> Federation:
    assert federation.address is not None
    split_address(federation.address)  # ConfigError for a malformed address
    if federation.insecure == (federation.root_certificates is not None):
        raise ConfigError(
            f"federation {federation.name!r}: give exactly one of root-certificates (TLS) "
            "and insecure = true"
        )
    if federation.insecure and federation.operator_token_file is not None:
        raise ConfigError(
            f"federation {federation.name!r}: an operator token needs TLS (over insecure "
            "it would travel in the clear): drop the token or use root-certificates"
        )
    return federation
