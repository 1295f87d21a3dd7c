"""The `stamen` command group: one entry point, its exit codes, its one error line.

Exit codes: 0 done (for `run --stream` and `log --follow`: the run completed); 1 the
operation failed (the SuperLink refused or is unreachable, the run failed or was stopped);
2 bad input (flags, the app's pyproject, a federation, a run that does not exist or is
already finished); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from stamen.common.cli import EXIT_BAD_INPUT, EXIT_FAILED, fail, package_version
from stamen.common.errors import (
    NotFoundError,
    RunNotRunningError,
    StamenError,
    UserInputError,
)

__all__ = ["PROG", "handled", "main", "stamen"]

PROG = "stamen"

F = TypeVar("F", bound=Callable[..., Any])


class Failed(Exception):
    """A command's outcome that is not an error of Stamen's: exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def handled(command: F) -> F:
    """Turn what a command raises into the one error line and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (UserInputError, NotFoundError, RunNotRunningError) as exc:
            sys.exit(fail(PROG, str(exc), EXIT_BAD_INPUT))
        except StamenError as exc:
            sys.exit(fail(PROG, str(exc), EXIT_FAILED))
        except Failed as exc:
            sys.exit(fail(PROG, str(exc), exc.code) if str(exc) else exc.code)

    return wrapper  # type: ignore[return-value]


@click.group(
    name=PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 done (run --stream, log --follow: the run completed), 1 the "
    "operation or the run failed, 2 bad input, 130 interrupted.",
)
@click.version_option(package_version(), "--version", prog_name=PROG)
def stamen() -> None:
    """Make, run and follow federated learning apps (the `flwr` workflow, with Stamen)."""


def _register() -> None:
    from .build import build
    from .keys import keys
    from .new import new
    from .run import run
    from .runs import log, ls, pull, stop

    for command in (new, build, run, ls, log, stop, pull, keys):
        stamen.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """The `stamen` entry point."""
    try:
        code = stamen.main(args=argv, prog_name=PROG, standalone_mode=False) or 0
    except click.ClickException as exc:
        code = fail(PROG, exc.format_message(), EXIT_BAD_INPUT)
    except click.Abort:
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = fail(PROG, "interrupted", 128 + signal.SIGINT.value)
    sys.exit(code)
