"""`stamen-supernode client:app --server HOST:9092 --root-certificates ca.crt`.

The deployment wiring of a node: flags and `STAMEN_*` variables become SuperNodeSettings,
the app is imported (in its worker process, or here with `--isolation thread`) before
anything is served, and the agent runs over gRPC until SIGTERM or Ctrl-C. Exit codes:
0 after a graceful stop, 1 when the node gives up (only with --max-retries or
--max-wait-time: by default it retries every transient failure of the SuperLink without
end) or is forced to stop, 2 for bad input or a certificate or credential the SuperLink
refuses (with one line that says what to fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from stamen.auth.keys import load_private_key
from stamen.auth.signing import RequestSigner
from stamen.client import ClientApp
from stamen.client.task import AppExecutor
from stamen.common.allocator import tune_allocator
from stamen.common.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    fail,
    flwr_compat_option,
    package_version,
    run,
)
from stamen.common.errors import (
    PermissionDeniedError,
    StamenError,
    UnauthenticatedError,
    UserInputError,
)
from stamen.common.loading import load_app
from stamen.common.logging import setup_logging
from stamen.common.project import read_project
from stamen.common.trust import TrustPolicy
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcFleetClient
from stamen.transport.grpc.guard import sign_requests

from .agent import SuperNodeAgent
from .bundles import BundleExecutor
from .executor import ThreadExecutor, WorkerProcessExecutor
from .settings import DEFAULT_BUNDLE_CACHE, DEFAULT_SERVER, SuperNodeSettings, describe

if TYPE_CHECKING:
    from .telemetry import SuperNodeMetrics

__all__ = ["main", "serve", "supernode"]

logger = logging.getLogger(__name__)

PROG = "stamen-supernode"


@click.command(
    name=PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "Every option can also be set through its STAMEN_* environment variable "
        "(STAMEN_SERVER, STAMEN_ROOT_CERTIFICATES, STAMEN_NODE_CONFIG, ...). "
        "Exit codes: 0 after a graceful stop (SIGTERM or Ctrl-C; a second one forces "
        "exit), 1 when the node gives up reaching the SuperLink, 2 for bad input."
    ),
)
@click.argument("app", envvar="STAMEN_APP", required=False)
@click.option(
    "--server",
    "--superlink",
    "server",
    default=DEFAULT_SERVER,
    metavar="HOST:PORT",
    show_default=True,
    envvar="STAMEN_SERVER",
    help="The SuperLink's Fleet API address, HOST:PORT.",
)
@click.option(
    "--root-certificates",
    metavar="CA",
    envvar="STAMEN_ROOT_CERTIFICATES",
    help="PEM file of the CA that signed the SuperLink's certificate (TLS).",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="STAMEN_INSECURE",
    help="Connect without TLS (for a local SuperLink started with --insecure).",
)
@click.option(
    "--node-config",
    default="",
    metavar="'KEY=VALUE ...'",
    envvar="STAMEN_NODE_CONFIG",
    help="This node's settings, which the app reads from context.node_config "
    "(for example 'partition-id=0 num-partitions=10').",
)
@click.option(
    "--dir",
    "directory",
    default=".",
    metavar="DIR",
    show_default=True,
    envvar="STAMEN_DIR",
    help="Directory the app module is imported from.",
)
@click.option(
    "--bundle-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=str(DEFAULT_BUNDLE_CACHE),
    show_default=True,
    envvar="STAMEN_BUNDLE_CACHE",
    help="Without APP: where the runs' app bundles are unpacked.",
)
@click.option(
    "--trusted-entities",
    "--trust-entities",
    "trusted_entities",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    envvar="STAMEN_TRUSTED_ENTITIES",
    help="Without APP: run only bundles signed by a publisher key this TOML file lists "
    '("KEY-ID" = "ssh-ed25519 ..." lines, from stamen keys new).',
)
@click.option(
    "--allow-bundle",
    "allow_bundles",
    multiple=True,
    metavar="sha256:HASH",
    envvar="STAMEN_ALLOW_BUNDLES",
    help="Without APP: run only these bundles (repeatable).",
)
@click.option(
    "--isolation",
    default="process",
    metavar="[process|thread]",
    show_default=True,
    envvar="STAMEN_ISOLATION",
    help="'process': the app runs in a warm worker process that is restarted if it dies; "
    "'thread': in this process (for debugging).",
)
@click.option(
    "--max-retries",
    type=int,
    metavar="N",
    envvar="STAMEN_MAX_RETRIES",
    help="Give up after this many failed reconnection attempts in a row [default: never].",
)
@click.option(
    "--max-wait-time",
    type=float,
    metavar="SECONDS",
    envvar="STAMEN_MAX_WAIT_TIME",
    help="Give up after this many seconds without the SuperLink [default: never].",
)
@click.option(
    "--metrics-address",
    metavar="[HOST:]PORT",
    envvar="STAMEN_METRICS_ADDRESS",
    show_envvar=True,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (a port alone: on "
    "127.0.0.1). Off unless given.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="STAMEN_LOG_FORMAT",
    show_envvar=True,
    help="text: a line a person reads; json: one object per line, for log collectors.",
)
@click.option(
    "--auth-supernode-private-key",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    envvar="STAMEN_AUTH_SUPERNODE_PRIVATE_KEY",
    help="This node's private key (Ed25519 or ECDSA P-256, PEM or OpenSSH): it signs "
    "every request, for a SuperLink started with --enable-supernode-auth.",
)
@click.option(
    "--log-level",
    default="INFO",
    metavar="LEVEL",
    show_default=True,
    envvar="STAMEN_LOG_LEVEL",
    help="DEBUG, INFO, WARNING or ERROR.",
)
@flwr_compat_option
@click.version_option(package_version(), "--version", prog_name=PROG)
@click.pass_context
def supernode(ctx: click.Context, /, **options: Any) -> None:
    """Run a SuperNode: serve the ClientApp APP (module:attribute, for example client:app)
    to a SuperLink. Without APP, the clientapp of the pyproject.toml in --dir is served;
    with neither, the node serves any run submitted with `stamen run`, fetching its app
    bundle from the SuperLink (cached in --bundle-cache).

    The node registers with the SuperLink, long-polls for instructions, runs APP on each
    and sends the replies back; it reconnects with backoff when the SuperLink goes away.
    """
    try:
        settings = SuperNodeSettings(**_with_project(options))
    except ValidationError as exc:
        ctx.exit(_fail(describe(exc), EXIT_BAD_INPUT))
    except UserInputError as exc:
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    setup_logging(settings.log_level, fmt=settings.log_format)
    tune_allocator()
    try:
        run(serve(settings))
    except UnauthenticatedError as exc:
        ctx.exit(_fail(f"the SuperLink refused this node: {exc}", EXIT_BAD_INPUT))
    except (UserInputError, PermissionDeniedError) as exc:  # retrying cannot mend these
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    except StamenError as exc:
        ctx.exit(_fail(str(exc), EXIT_FAILED))
    except asyncio.CancelledError as exc:  # a signal cancelled it: say which way
        ctx.exit(_fail(exc.args[0] if exc.args else "cancelled", EXIT_FAILED))


def _with_project(options: dict[str, Any]) -> dict[str, Any]:
    """APP, or the clientapp of the app's pyproject.toml in --dir, or none (each run's
    bundle then brings its app)."""
    if options["app"] or not Path(options["directory"]).is_dir():
        return options  # a missing --dir is reported by the settings
    app = read_project(options["directory"]).components.get("clientapp")
    return {**options, "app": app or None}


def main(argv: Sequence[str] | None = None) -> None:
    """The `stamen-supernode` entry point."""
    try:
        code = supernode.main(args=argv, prog_name=PROG, standalone_mode=False) or 0
    except click.ClickException as exc:
        code = _fail(exc.format_message(), EXIT_BAD_INPUT)
    except click.Abort:
        code = EXIT_FAILED
    sys.exit(code)


async def serve(settings: SuperNodeSettings) -> None:
    """Run one node until it is stopped (SIGTERM/SIGINT) or gives up."""
    signer = None
    if settings.auth_supernode_private_key is not None:
        signer = RequestSigner(load_private_key(settings.auth_supernode_private_key))
        logger.info("signing requests with node key %s", signer.fingerprint)
    shutdown = _Shutdown(asyncio.current_task())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.signalled, sig)
    channel = connect(
        settings.server, root_certificates=settings.root_certificates, insecure=settings.insecure
    )
    if signer is not None:
        sign_requests(channel, signer)
    try:
        executor = await _start_executor(settings)
        try:
            metrics, executor = _instrumented(settings, executor)
            agent = SuperNodeAgent(
                GrpcFleetClient(channel),
                executor,
                settings.node_config,
                max_retries=settings.max_retries,
                max_wait_time=settings.max_wait_time,
            )
            if isinstance(executor, BundleExecutor):
                executor.attach(agent.get_run, agent.pull_object)
            shutdown.stop = agent.stop
            logger.info("connecting to the SuperLink at %s", settings.server)
            async with contextlib.AsyncExitStack() as web:
                if metrics is not None and settings.metrics_address is not None:
                    from stamen.common.webserver import http_server, metrics_app

                    app = metrics_app(metrics.registry)
                    bound = await web.enter_async_context(
                        http_server(app, settings.metrics_address)
                    )
                    logger.info("Prometheus metrics at http://%s/metrics", bound)
                await agent.run()
            logger.info("stopped")
        finally:
            await executor.aclose()
    finally:
        channel.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _instrumented(
    settings: SuperNodeSettings, executor: AppExecutor
) -> tuple[SuperNodeMetrics | None, AppExecutor]:
    """The executor, counted when metrics are on (imported only then: start-up time)."""
    if settings.metrics_address is None:
        return None, executor
    from .telemetry import InstrumentedExecutor, SuperNodeMetrics

    metrics = SuperNodeMetrics()
    return metrics, InstrumentedExecutor(executor, metrics)


async def _start_executor(settings: SuperNodeSettings) -> AppExecutor:
    """The app's executor, with the app imported: a bad app fails here, before serving."""
    if settings.app is None:
        policy = TrustPolicy.from_options(settings.trusted_entities, settings.allow_bundles)
        logger.info("no app: serving the app bundle of each run (cache %s)", settings.bundle_cache)
        if policy is None:
            logger.warning("no --trusted-entities or --allow-bundle: any app submitted to the "
                           "SuperLink will run on this node")  # fmt: skip
        else:
            logger.info("running only bundles %s", policy.describe())
        return BundleExecutor(settings.bundle_cache, policy=policy)
    if settings.isolation == "thread":
        app = load_app(settings.app, ClientApp, settings.directory)
        return ThreadExecutor(app)
    executor = WorkerProcessExecutor(settings.app, Path(settings.directory))
    try:
        await executor.start()
    except BaseException:
        await executor.aclose()
        raise
    return executor


class _Shutdown:
    """Signals: the first stops the node gracefully, a second cancels it."""

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self._task = task
        self._signalled = False
        self.stop: Callable[[], None] | None = None

    def signalled(self, sig: signal.Signals) -> None:
        if self.stop is None:
            self._cancel(f"{sig.name} before the node had started")
            return
        if self._signalled:
            self._cancel(f"{sig.name} again: stopped at once, the task in hand got no reply")
            return
        self._signalled = True
        logger.warning("%s: stopping gracefully (again to force)", sig.name)
        self.stop()

    def _cancel(self, reason: str) -> None:
        logger.warning("%s", reason)
        if self._task is not None:
            self._task.cancel(reason)


def _fail(message: str, code: int) -> int:
    return fail(PROG, message, code)
