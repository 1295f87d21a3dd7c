"""`stamen-supernode client:app --server HOST:9092 --root-certificates ca.crt`.

The deployment wiring of a node: flags and `STAMEN_*` variables become SuperNodeSettings,
the app is imported (in its worker process, or here with `--isolation thread`) before
anything is served, and the agent runs over gRPC until SIGTERM or Ctrl-C (the signal
policy of every service: `stamen.common.signals`). Exit codes (`stamen.common.cli`): 0
after a graceful stop, 1 when the node gives up (only with --max-retries or
--max-wait-time: by default it retries every transient failure of the SuperLink without
end), 2 for bad input or a certificate or credential the SuperLink refuses (with one line
that says what to fix), EXIT_CANCELLED when a second signal forced the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
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
    EXIT_CANCELLED,
    EXIT_FAILED,
    ServiceCommand,
    fail,
    flwr_compat_option,
    package_version,
)
from stamen.common.errors import (
    PermissionDeniedError,
    StamenError,
    UnauthenticatedError,
    UserInputError,
)
from stamen.common.loading import load_app
from stamen.common.logging import setup_logging
from stamen.common.options import (
    dir_option,
    log_options,
    metrics_address_option,
    server_option,
    tls_client_options,
)
from stamen.common.project import read_project
from stamen.common.signals import serve_until_signalled
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


@click.command(name=PROG, cls=ServiceCommand)
@click.argument("app", envvar="STAMEN_APP", required=False)
@server_option("Fleet API", DEFAULT_SERVER)
@tls_client_options
@click.option(
    "--node-config",
    default="",
    metavar="'KEY=VALUE ...'",
    envvar="STAMEN_NODE_CONFIG",
    help="This node's settings, which the app reads from context.node_config "
    "(for example 'partition-id=0 num-partitions=10').",
)
@dir_option
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
@metrics_address_option
@click.option(
    "--auth-supernode-private-key",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    envvar="STAMEN_AUTH_SUPERNODE_PRIVATE_KEY",
    help="This node's private key (Ed25519 or ECDSA P-256, PEM or OpenSSH): it signs "
    "every request, for a SuperLink started with --enable-supernode-auth.",
)
@log_options
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
        serve_until_signalled(lambda stop: serve(settings, stop=stop), "the node")
    except UnauthenticatedError as exc:
        ctx.exit(_fail(f"the SuperLink refused this node: {exc}", EXIT_BAD_INPUT))
    except (UserInputError, PermissionDeniedError) as exc:  # retrying cannot mend these
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    except StamenError as exc:
        ctx.exit(_fail(str(exc), EXIT_FAILED))
    except asyncio.CancelledError as exc:  # a second signal cancelled it
        ctx.exit(_fail(exc.args[0] if exc.args else "cancelled", EXIT_CANCELLED))


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


async def serve(
    settings: SuperNodeSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one node until `stop` is set (then it stops gracefully) or it gives up.

    `ready` is set once the node is registered with the SuperLink and takes instructions.
    """
    signer = None
    if settings.auth_supernode_private_key is not None:
        signer = RequestSigner(load_private_key(settings.auth_supernode_private_key))
        logger.info("signing requests with node key %s", signer.fingerprint)
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
            logger.info("connecting to the SuperLink at %s", settings.server)
            async with contextlib.AsyncExitStack() as web:
                if metrics is not None and settings.metrics_address is not None:
                    from stamen.common.webserver import http_server, metrics_app

                    app = metrics_app(metrics.registry)
                    bound = await web.enter_async_context(
                        http_server(app, settings.metrics_address)
                    )
                    logger.info("Prometheus metrics at http://%s/metrics", bound)
                await _run_until_stopped(agent, ready, stop)
            logger.info("stopped")
        finally:
            await executor.aclose()
    finally:
        channel.close()


async def _run_until_stopped(
    agent: SuperNodeAgent, ready: asyncio.Event | None, stop: asyncio.Event | None
) -> None:
    """The agent's run(), stopped gracefully (agent.stop()) once `stop` is set."""
    if stop is None:
        await agent.run(ready)
        return

    async def stop_when_asked() -> None:
        await stop.wait()
        agent.stop()

    watcher = asyncio.get_running_loop().create_task(stop_when_asked())
    try:
        await agent.run(ready)
    finally:
        watcher.cancel()
        await asyncio.wait((watcher,))


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


def _fail(message: str, code: int) -> int:
    return fail(PROG, message, code)
