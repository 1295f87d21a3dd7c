"""`stamen-serverapp server:app --server HOST:9091`: run a ServerApp against a SuperLink.

Exit codes (every service's, `stamen.common.cli`): 0 when the app returns; 1 when it
raises, when the run is stopped from outside, or when the SuperLink stays unreachable for
--max-wait-time seconds (by default it retries without end); 2 for bad input (flags,
certificates refused, an app reference that does not load); 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM) when a signal stops the run, which is then marked
stopped; EXIT_CANCELLED when a second signal cuts that short (`stamen.common.signals`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from stamen import __version__
from stamen.common.allocator import tune_allocator
from stamen.common.cli import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    ServiceCommand,
    exit_stopped,
    flwr_compat_option,
)
from stamen.common.errors import ConfigError, PermissionDeniedError, StamenError, UserInputError
from stamen.common.fields import describe_invalid
from stamen.common.loading import load_app
from stamen.common.logging import setup_logging
from stamen.common.options import dir_option, log_options, server_option, tls_client_options
from stamen.common.project import open_project
from stamen.common.signals import serve_until_signalled, until_stopped
from stamen.server import ServerApp
from stamen.server.history import History
from stamen.server.results import save_final_arrays, write_results
from stamen.server.summary import summary_table
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcServerAppIoClient
from stamen.transport.grpc.guard import operator_token, use_operator_token

from .retry import RetryingServerAppIo
from .runner import run_serverapp
from .settings import DEFAULT_SERVER, ServerAppSettings

__all__ = ["main", "serve"]

logger = logging.getLogger(__name__)

_PROG = "stamen-serverapp"


@click.command(name=_PROG, cls=ServiceCommand)
@click.argument("app", envvar="STAMEN_APP", required=False)
@server_option("ServerAppIo", DEFAULT_SERVER)
@tls_client_options
@click.option(
    "--operator-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STAMEN_OPERATOR_TOKEN_FILE",
    help="File holding this operator's token, for a SuperLink started with "
    "--auth-operator-tokens. Without it, the token in STAMEN_OPERATOR_TOKEN (if set) is sent.",
)
@click.option(
    "--run-config",
    default="",
    envvar="STAMEN_RUN_CONFIG",
    help="Run config overrides, e.g. 'num-server-rounds=3 lr=0.1' (or a .toml file), of "
    "the defaults in the app's pyproject.toml ([tool.stamen.app.config]).",
)
@click.option(
    "--run-id",
    type=int,
    envvar="STAMEN_RUN_ID",
    help="Run an existing (pending) run instead of creating one.",
)
@click.option(
    "--resume",
    type=int,
    metavar="RUN_ID",
    envvar="STAMEN_RESUME",
    help="Continue run RUN_ID from its last completed round (its checkpoint): a running "
    "run whose runner died is driven again, a failed or stopped one goes on as a new run.",
)
@dir_option
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="STAMEN_OUTPUT_DIR",
    help="Write the run's results here when it completes: history.json, metrics.csv, "
    "final_arrays.npz (and metrics.png with matplotlib).",
)
@log_options
@click.option(
    "--max-wait-time",
    type=float,
    envvar="STAMEN_MAX_WAIT_TIME",
    help="Give up after this many seconds in a row without a working SuperLink "
    "(unreachable, or failing with INTERNAL/UNAVAILABLE/RESOURCE_EXHAUSTED) [default: never].",
)
@click.option(
    "--round-timeout",
    type=float,
    envvar="STAMEN_ROUND_TIMEOUT",
    help="Seconds a round waits for its replies (sets the run config's 'round-timeout', "
    "which overrides the app's ServerConfig) [default: the app's, else 600].",
)
@click.option(
    "--node-wait-timeout",
    type=float,
    envvar="STAMEN_NODE_WAIT_TIMEOUT",
    help="Seconds the ServerApp waits for the nodes its strategy needs before the run "
    "fails (sets the run config's 'min-available-timeout') [default: the run config's, "
    "else 300].",
)
@click.option(
    "--fleet-address",
    envvar="STAMEN_FLEET_ADDRESS",
    help="The SuperLink's Fleet API address, HOST:PORT, that the 'waiting for nodes' "
    "line tells SuperNodes to use [default: the --server host, port 9092].",
)
@click.option(
    "--save-final-arrays",
    type=click.Path(path_type=Path),
    envvar="STAMEN_SAVE_FINAL_ARRAYS",
    help="Save the final model's arrays to this .npz file when the run completes "
    "(checked for writing before the run starts).",
)
@flwr_compat_option
@click.version_option(__version__, "--version", prog_name=_PROG)
def main(**flags: Any) -> None:
    """Run the ServerApp APP (module:attribute, e.g. server:app) against a SuperLink.

    Without APP, the serverapp of the app's pyproject.toml (in --dir) is run."""
    try:
        # An existing run (--run-id) has its config already: only the overrides are sent.
        existing = flags["run_id"] is not None
        overrides = "" if existing else flags["run_config"]
        project, run_config = open_project(flags["directory"], overrides)
        app = project.component("serverapp", flags["app"], "APP")
        if existing:
            run_config = flags["run_config"]
        settings = ServerAppSettings(**{**flags, "app": app, "run_config": run_config})
        setup_logging(settings.log_level, fmt=settings.log_format)
        tune_allocator()
        served = serve_until_signalled(lambda stop: serve(settings, stop=stop), "the run")
    except ValidationError as exc:
        _fail(describe_invalid(exc, {"app": "APP", "directory": "--dir"}), EXIT_BAD_INPUT)
    except (UserInputError, PermissionDeniedError) as exc:  # retrying cannot mend these
        _fail(exc, EXIT_BAD_INPUT)
    except StamenError as exc:
        _fail(exc, EXIT_FAILED)
    except asyncio.CancelledError:
        _fail("forced exit: the run was not marked stopped", EXIT_CANCELLED)
    except KeyboardInterrupt:  # before the event loop took over SIGINT
        _fail("interrupted", exit_stopped(signal.SIGINT))
    if served.result is None and served.signal is not None:
        logger.warning("stopped by %s", served.signal.name)
        sys.exit(exit_stopped(served.signal))
    sys.exit(EXIT_OK)


async def serve(
    settings: ServerAppSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> History | None:
    """Run the app to its end and return its History; None when `stop` was set first (the
    run is then cancelled, which marks it stopped). `ready` is set once the app is loaded
    and its run starts."""
    server_app = load_app(settings.app, ServerApp, settings.directory)
    channel = connect(
        settings.server, root_certificates=settings.root_certificates, insecure=settings.insecure
    )
    token = None if settings.insecure else operator_token(settings.operator_token_file)
    if token is not None:  # never in the clear: an insecure SuperLink checks no tokens
        use_operator_token(channel, token)
    serverappio = RetryingServerAppIo(
        GrpcServerAppIoClient(channel), max_wait_time=settings.max_wait_time
    )
    try:
        logger.info("connecting to the SuperLink at %s", settings.server)
        running = run_serverapp(
            serverappio,
            server_app,
            server_app_ref=settings.app,
            run_config=_run_config(settings),
            run_id=settings.run_id,
            resume=settings.resume,
            fleet_address=settings.nodes_connect_to,
        )
        if ready is not None:
            ready.set()
        history = await until_stopped(running, stop)
        if history is not None:
            _finished(history, settings)
        return history
    finally:
        channel.close()


def _run_config(settings: ServerAppSettings) -> dict[str, Any]:
    """The run config with the flags that set keys of it applied."""
    config = dict(settings.run_config)
    if settings.round_timeout is not None:
        config["round-timeout"] = settings.round_timeout
    if settings.node_wait_timeout is not None:
        config["min-available-timeout"] = settings.node_wait_timeout
    return config


def _write_results(history: History, directory: Path) -> None:
    try:
        written = write_results(history, directory)
    except OSError as exc:
        raise ConfigError(f"--output-dir: cannot write the results: {exc}") from None
    logger.info("results in %s: %s", directory, ", ".join(path.name for path in written))


def _finished(history: History, settings: ServerAppSettings) -> None:
    """The round table on stdout (the run's log, for a run the SuperLink launched), then
    the files asked for."""
    table = summary_table(history)
    if table:
        click.echo(table)
    if settings.output_dir is not None:
        _write_results(history, settings.output_dir)
    if settings.save_final_arrays is not None:
        _save_final_arrays(history, settings.save_final_arrays)


def _save_final_arrays(history: History, path: Path) -> None:
    try:
        save_final_arrays(history, path)
    except (OSError, ValueError) as exc:
        raise StamenError(f"--save-final-arrays: {exc}") from None
    logger.info("final arrays saved to %s", path)


def _fail(error: BaseException | str, code: int) -> NoReturn:
    click.echo(f"{_PROG}: error: {error}", err=True)
    sys.exit(code)
