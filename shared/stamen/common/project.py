"""The app's `pyproject.toml`: its components, its run-config defaults, its federations.

Every CLI reads an app the same way, from its directory (`--dir`): each table is taken
from `[tool.stamen.<table>]` or, failing that, from Flower's `[tool.flwr.<table>]`, so a
Flower app works unchanged:

    [tool.stamen.app.components]          # serverapp / clientapp: the --server-app and
    serverapp = "server:app"              # --client-app a CLI uses when none is given
    clientapp = "client:app"

    [tool.stamen.app.config]              # run-config defaults; nested tables become
    num-server-rounds = 3                 # dotted keys ("model.lr")

    [tool.stamen.federations]             # where `stamen run` submits (see stamen.cli)
    default = "local-simulation"

`--run-config` overrides the defaults: a key the app does not declare is an error that
names the closest declared key, and a value of the wrong kind (text for a number) is an
error too, both before anything runs. An app without a pyproject, or one that declares
no config table, takes any key (there is nothing to check against).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import flatten_dict, parse_user_config
from .errors import ConfigError
from .records import UserConfig, UserConfigValue

__all__ = [
    "FRAMEWORK_KEYS",
    "PYPROJECT",
    "AppProject",
    "fuse_run_config",
    "open_project",
    "read_project",
]

PYPROJECT = "pyproject.toml"

_TOOLS = ("stamen", "flwr")
"""The `[tool.X]` tables read, in order of preference."""

Component = Literal["serverapp", "clientapp"]

FRAMEWORK_KEYS = frozenset(
    {"seed", "min-available-timeout", "round-timeout", "max-failure-rate", "allow-empty-rounds"}
)
"""Run-config keys Stamen itself reads (sampling seed, waits, failure policy): any run
may set them, whether or not its app declares them."""


@dataclass(frozen=True, slots=True)
class AppProject:
    """What an app directory's pyproject declares (all empty when it has none)."""

    directory: Path
    path: Path | None = None
    name: str = ""
    version: str = ""
    components: Mapping[str, str] = field(default_factory=dict)
    config: UserConfig | None = None
    """Flattened run-config defaults; None when the app declares no config table."""
    federations: Mapping[str, Any] = field(default_factory=dict)
    """The federations table as written (`default` plus one table per federation)."""

    def component(self, kind: Component, given: str | None, flag: str) -> str:
        """`given` if set, else the pyproject's `kind` component; ConfigError naming `flag`
        (and where it looked) when there is neither."""
        if given:
            return given
        reference = self.components.get(kind)
        if reference:
            return reference
        if self.path is None:
            where = f"{str(self.directory)!r} has no {PYPROJECT}"
        else:
            where = f"{self.path} declares no {kind} in [tool.stamen.app.components]"
        raise ConfigError(f"pass {flag} (module:attribute): {where} (or pass --dir APP_DIR)")

    def run_config(self, overrides: UserConfig) -> UserConfig:
        """The defaults with `overrides` applied (see `fuse_run_config`)."""
        return fuse_run_config(self.config, overrides)


def open_project(
    directory: str | Path, run_config: str | UserConfig = ""
) -> tuple[AppProject, UserConfig]:
    """What every CLI does with `--dir` and `--run-config`: the app's project and the run
    config (its defaults with the overrides applied). ConfigError names the flag."""
    if not Path(directory).is_dir():
        raise ConfigError(f"--dir: {str(directory)!r} is not a directory")
    project = read_project(directory)
    try:
        overrides = parse_user_config(run_config) if isinstance(run_config, str) else run_config
    except ConfigError as exc:
        raise ConfigError(f"--run-config: {exc}") from None
    return project, project.run_config(overrides)


def read_project(directory: str | Path) -> AppProject:
    """Read `directory/pyproject.toml`; an empty AppProject when there is none.

    ConfigError (one line) when it does not parse or a table has the wrong shape.
    """
    root = Path(directory)
    path = root / PYPROJECT
    if not path.is_file():
        return AppProject(directory=root)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    project = document.get("project", {})
    tools = document.get("tool", {})
    components = _table(path, tools, "app", "components")
    for kind, reference in components.items():
        if not isinstance(reference, str):
            raise ConfigError(f"{path}: component {kind!r} must be a 'module:attribute' string")
    config_table = _table(path, tools, "app", "config", missing=None)
    try:
        config = None if config_table is None else flatten_dict(config_table)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return AppProject(
        directory=root,
        path=path,
        name=str(project.get("name", "")) if isinstance(project, dict) else "",
        version=str(project.get("version", "")) if isinstance(project, dict) else "",
        components=components,
        config=config,
        federations=_table(path, tools, "federations"),
    )


def _table(path: Path, tools: Any, *keys: str, missing: Any = ...) -> Any:
    """`[tool.stamen.<keys>]`, else `[tool.flwr.<keys>]`, else `missing` (default {})."""
    for tool in _TOOLS:
        table: Any = tools.get(tool) if isinstance(tools, dict) else None
        for key in keys:
            table = table.get(key) if isinstance(table, dict) else None
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.{tool}.{'.'.join(keys)}] must be a table")
        return table
    return {} if missing is ... else missing


def fuse_run_config(defaults: UserConfig | None, overrides: UserConfig) -> UserConfig:
    """`defaults` updated with `overrides`, each override checked against the defaults.

    With `defaults` None (nothing declared) every override is taken as given. Otherwise
    a key that is not declared (nor one of FRAMEWORK_KEYS) is a ConfigError naming the
    closest declared key, and so is
    a number or flag of another kind than its default (a float default takes an int, as
    1.0; a text default takes anything).
    """
    if defaults is None:
        return dict(overrides)
    fused = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            if key in FRAMEWORK_KEYS:
                fused[key] = value
                continue
            raise ConfigError(_unknown_key(key, defaults))
        fused[key] = _checked(key, value, defaults[key])
    return fused


def _unknown_key(key: str, defaults: UserConfig) -> str:
    message = f"--run-config: the app declares no key {key!r}"
    close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if not defaults:
        return f"{message} (its config table is empty)"
    return f"{message} (declared: {', '.join(sorted(defaults))})"


def _checked(key: str, value: UserConfigValue, default: UserConfigValue) -> UserConfigValue:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    else:
        return value  # a text default takes any value, as Flower's does
    raise ConfigError(
        f"--run-config: {key}={value!r} is not {expected} (the app's default is {default!r})"
    )
