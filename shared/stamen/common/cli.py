"""What every service's command line shares: exit codes, the error line, the event loop,
and the command class whose --help ends with the environment variables and exit codes.

Only CLI entry points exit the process; they print one line `PROG: error: ...` and exit
with one of the codes below, the same on every command (EXIT_CODES says what each means).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_OK",
    "ServiceCommand",
    "exit_stopped",
    "fail",
    "flwr_compat_option",
    "loop_factory",
    "package_version",
    "run",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3


def exit_stopped(signum: int) -> int:
    """The code of a run that signal `signum` stopped before it completed (shell style)."""
    return 128 + signum


EXIT_CODES = (
    (str(EXIT_OK), "done: the run completed, or the service stopped gracefully after "
     "SIGINT/SIGTERM"),
    (str(EXIT_FAILED), "failed (the app raised, the SuperLink stayed unreachable, ...)"),
    (str(EXIT_BAD_INPUT), "bad input: an option, a file, a certificate or an app reference"),
    (str(EXIT_CANCELLED), "a second SIGINT/SIGTERM cancelled the graceful stop: work in "
     "flight was dropped"),
    ("128+N", "a run stopped by signal N before it completed (130: SIGINT, 143: SIGTERM)"),
)  # fmt: skip
"""Every command's exit codes, as (code, meaning) rows for --help."""

T = TypeVar("T")


def fail(prog: str, message: str, code: int) -> int:
    """Print the one error line on stderr; returns `code` for the caller to exit with."""
    click.echo(f"{prog}: error: {message}", err=True)
    return code


class ServiceCommand(click.Command):
    """A service's command: `-h`/`--help` at 100 columns, and a help that ends with the
    environment variables (read from the options, so the list cannot drift) and the exit
    codes. The signal policy is the same everywhere: see `stamen.common.signals`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "context_settings", {"help_option_names": ["-h", "--help"], "max_content_width": 100}
        )
        super().__init__(*args, **kwargs)
        for param in self.params:  # listed once, in the section, not beside each option
            if isinstance(param, click.Option):
                param.show_envvar = False

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        rows = [
            (envvar, _param_name(param))
            for param in self.get_params(ctx)
            for envvar in _envvars(param)
        ]
        if rows:
            with formatter.section("Environment variables"):
                formatter.write_dl(rows)
        with formatter.section("Signals"):
            formatter.write_text(
                "The first SIGINT or SIGTERM stops gracefully; a second one cancels what "
                "is still in flight and exits at once."
            )
        with formatter.section("Exit codes"):
            formatter.write_dl(list(EXIT_CODES))


def _envvars(param: click.Parameter) -> list[str]:
    if param.envvar is None:
        return []
    return [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)


def _param_name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


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
