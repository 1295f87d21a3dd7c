"""The click options that several service CLIs share, each defined once.

Every option here reads its `STAMEN_*` environment variable; `ServiceCommand` lists them
in --help. A new option that one CLI alone needs stays in that CLI; one that two need
comes here. `group(...)` bundles options into one decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "dir_option",
    "group",
    "log_options",
    "metrics_address_option",
    "server_option",
    "tls_client_options",
]

F = TypeVar("F", bound=Callable[..., Any])


def group(*options: Callable[[F], F]) -> Callable[[F], F]:
    """The options, applied as one decorator, in the order --help lists them."""

    def apply(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


log_options = group(
    click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
        envvar="STAMEN_LOG_LEVEL",
        help="The least severe log lines shown: DEBUG, INFO, WARNING or ERROR.",
    ),
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        envvar="STAMEN_LOG_FORMAT",
        help="text: a line a person reads; json: one object per line, for log collectors.",
    ),
)
"""--log-level and --log-format."""

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    metavar="DIR",
    envvar="STAMEN_DIR",
    help="Directory the app is imported from (its pyproject.toml is read there).",
)
"""--dir, stored as `directory`."""


def server_option(api: str, default: str) -> Callable[[F], F]:
    """--server (alias --superlink): the SuperLink's address for `api`, stored as `server`."""
    return click.option(
        "--server",
        "--superlink",
        "server",
        default=default,
        show_default=True,
        metavar="HOST:PORT",
        envvar="STAMEN_SERVER",
        help=f"The SuperLink's {api} address, HOST:PORT.",
    )


tls_client_options = group(
    click.option(
        "--root-certificates",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="CA",
        envvar="STAMEN_ROOT_CERTIFICATES",
        help="PEM file of the CA that signed the SuperLink's certificate (TLS).",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        envvar="STAMEN_INSECURE",
        help="Connect without TLS (only to a SuperLink started with --insecure).",
    ),
)
"""--root-certificates CA or --insecure: how a client reaches the SuperLink."""

metrics_address_option = click.option(
    "--metrics-address",
    metavar="[HOST:]PORT",
    envvar="STAMEN_METRICS_ADDRESS",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: on "
    "127.0.0.1). Off unless given.",
)
"""--metrics-address, off unless given."""
