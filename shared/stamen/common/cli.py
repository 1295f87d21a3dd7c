"""What every service's command line shares: exit codes, the error line, the event loop.

Only CLI entry points exit the process; they print one line `PROG: error: ...` and exit
with EXIT_BAD_INPUT (2) for input a user can fix, EXIT_FAILED (1) for a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "fail",
    "flwr_compat_option",
    "loop_factory",
    "package_version",
    "run",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")


def fail(prog: str, message: str, code: int) -> int:
    """Print the one error line on stderr; returns `code` for the caller to exit with."""
    click.echo(f"{prog}: error: {message}", err=True)
    return code


def _enable_flwr_compat(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from stamen.compat import FlwrInstalledError, enable_flwr_compat

    try:
        enable_flwr_compat()
    except FlwrInstalledError as exc:
        ctx.exit(fail(ctx.find_root().info_name or "stamen", str(exc), EXIT_BAD_INPUT))


flwr_compat_option = click.option(
    "--flwr-compat",
    is_flag=True,
    expose_value=False,
    envvar="STAMEN_FLWR_COMPAT",
    show_envvar=True,
    callback=_enable_flwr_compat,
    help="Run a Flower app unedited: its `import flwr...` lines get the stamen modules "
    "(refused where the real flwr is installed).",
)
"""`--flwr-compat`, the same on every CLI that loads an app."""


def package_version() -> str:
    """Stamen's installed version (looked up only when asked: importlib.metadata is slow)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stamen")
    except PackageNotFoundError:
        return "unknown"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is installed, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to its end in a fresh event loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
