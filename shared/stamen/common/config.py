"""Run and node config from the command line: `--run-config 'num-server-rounds=3 lr=0.1'`.

Pairs are `key=value`, separated by spaces. Values are typed like TOML scalars: integers,
floats, true/false, and "double" or 'single' quoted strings (quoted values are always
strings, so `id="007"` stays "007"); any other bare word is a string. An inline table
(`model={lr=0.1}`) is flattened to dotted keys (`model.lr`), as Flower does, and a lone
`PATH.toml` reads the pairs from that file. A bare value ending in a comma (`'a=1, b=2'`)
is refused: pairs are separated by spaces.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .records import UserConfig, UserConfigValue

__all__ = ["flatten_dict", "parse_user_config", "split_address", "unflatten_dict"]

_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_QUOTE = re.compile("[\"']")
# key=value, where value is a TOML basic string, a TOML literal string, or a bare word.
_PAIR = re.compile(r"""(?P<key>[^\s=]*)=(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"']*)""")
_PIECE = re.compile(r"""(?:[^\s"']|"(?:[^"\\]|\\.)*"?|'[^']*'?)+""")


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ConfigError if it is neither."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{address!r} is not an address of the form HOST:PORT")
    return host, int(port_text)


def parse_user_config(text: str) -> UserConfig:
    """Parse space-separated `key=value` pairs; ConfigError names the first bad piece."""
    if text.strip().endswith(".toml") and "=" not in text:
        return _read_toml(Path(text.strip()).expanduser())
    config: UserConfig = {}
    for piece in _PIECE.findall(text):
        match = _PAIR.fullmatch(piece)
        if match is None:
            why = "a quote is unclosed or misplaced" if _QUOTE.search(piece) else "not key=value"
            raise ConfigError(f"config entry {piece!r}: {why}")
        key, raw = match["key"], match["value"]
        if not _KEY.fullmatch(key):
            raise ConfigError(
                f"config entry {piece!r}: the key must be letters, digits, '_', '.' or '-'"
            )
        if not raw:
            raise ConfigError(f'config entry {piece!r} has no value (write {key}="" for "")')
        if raw.endswith(",") and raw[0] not in "\"'{":
            raise ConfigError(
                f"config entry {piece!r}: separate pairs with spaces, not commas "
                "(for example 'a=1 b=2')"
            )
        value = _value(piece, raw)
        entries = _flat(value, key) if isinstance(value, Mapping) else {key: value}
        for name, item in entries.items():
            if name in config:
                raise ConfigError(f"config entry {piece!r}: the key {name!r} is given twice")
            config[name] = item
    return config


def _flat(table: Mapping[str, Any], parent_key: str = "") -> UserConfig:
    """`flatten_dict`, its error a ConfigError (bad input, not a bug)."""
    try:
        return flatten_dict(table, parent_key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _read_toml(path: Path) -> UserConfig:
    try:
        with path.open("rb") as file:
            return _flat(tomllib.load(file))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {str(path)!r} is not valid TOML: {exc}") from None


def _value(piece: str, raw: str) -> UserConfigValue | dict[str, Any]:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if "#" in raw and raw[0] not in "\"'":
        return raw  # TOML would read the rest as a comment
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw[0] in "\"'":
            raise ConfigError(f"config entry {piece!r}: {raw} is not a valid string") from None
        return raw
    if isinstance(value, bool | int | float | str | dict):
        return value
    return raw  # a bare word that TOML reads as a date or an array stays text


def flatten_dict(raw_dict: Mapping[str, Any] | None, parent_key: str = "") -> UserConfig:
    """Nested tables (as TOML reads `[tool.flwr.app.config]`) -> one level of dotted keys:
    `{"a": {"b": 1}}` -> `{"a.b": 1}`. ValueError names a value that is no config value."""
    flat: UserConfig = {}
    for key, value in (raw_dict or {}).items():
        dotted = f"{parent_key}.{key}" if parent_key else key
        if isinstance(value, Mapping):
            flat.update(flatten_dict(value, dotted))
        elif isinstance(value, bool | int | float | str):
            flat[dotted] = value
        else:
            raise ValueError(
                f"the value for key {dotted!r} is a {type(value).__name__}: a config value "
                "must be an int, float, bool or str, or a table of those"
            )
    return flat


def unflatten_dict(flat_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten_dict`: `{"a.b": 1}` -> `{"a": {"b": 1}}`."""
    nested: dict[str, Any] = {}
    for key, value in flat_dict.items():
        *parents, leaf = key.split(".")
        table = nested
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value
    return nested


def __getattr__(name: str) -> Any:
    # Flower's FAB/pyproject helpers: importing one says why Stamen has none.
    from stamen.compat.unsupported import unsupported_attributes

    return unsupported_attributes(__name__)(name)
