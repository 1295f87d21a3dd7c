"""`stamen-superlink`: run the SuperLink as a service.

The only place that exits the process: bad input is one line on stderr and exit code 2;
the signal policy and exit codes are every service's (`stamen.common.signals`,
`stamen.common.cli`): SIGINT/SIGTERM stop it gracefully (exit 0), a second signal forces
exit (EXIT_CANCELLED). SIGHUP reloads the key and token files.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from stamen.common.allocator import tune_allocator
from stamen.common.bundle import MAX_BUNDLE_SIZE
from stamen.common.cli import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    ServiceCommand,
    fail,
    package_version,
)
from stamen.common.errors import StamenError, UserInputError
from stamen.common.logging import setup_logging
from stamen.common.options import log_options, metrics_address_option
from stamen.common.signals import serve_until_signalled

from .auth import Credentials
from .deliveries import DEFAULT_DELIVERY_LEASE
from .leases import DEFAULT_RUN_LEASE
from .serve import serve
from .settings import Certificates, SuperLinkSettings, describe

__all__ = ["main"]

logger = logging.getLogger(__name__)

PROG = "stamen-superlink"

_PATH = click.Path(path_type=Path, dir_okay=False)


@click.command(
    name=PROG,
    cls=ServiceCommand,
    epilog=(
        "STAMEN_CERTIFICATES takes the three paths separated by spaces. SIGHUP reads "
        "--auth-list-public-keys and --auth-operator-tokens again."
    ),
)
@click.option(
    "--certificates",
    nargs=3,
    type=_PATH,
    metavar="CA CERT KEY",
    envvar="STAMEN_CERTIFICATES",
    show_envvar=True,
    help="Serve over TLS: the CA certificate that clients pass as --root-certificates, "
    "then this SuperLink's certificate and its private key (PEM files; "
    "`make certs` makes a local set).",
)
@click.option(
    "--ssl-ca-certfile",
    type=_PATH,
    envvar="STAMEN_SSL_CA_CERTFILE",
    show_envvar=True,
    help="The CA of --certificates, as a separate option.",
)
@click.option(
    "--ssl-certfile",
    type=_PATH,
    envvar="STAMEN_SSL_CERTFILE",
    show_envvar=True,
    help="The CERT of --certificates, as a separate option.",
)
@click.option(
    "--ssl-keyfile",
    type=_PATH,
    envvar="STAMEN_SSL_KEYFILE",
    show_envvar=True,
    help="The KEY of --certificates, as a separate option.",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="STAMEN_INSECURE",
    show_envvar=True,
    help="Serve without TLS: anyone who can reach the ports can join or read. "
    "For local experiments only.",
)
@click.option(
    "--fleet-api-address",
    default="0.0.0.0:9092",
    show_default=True,
    envvar="STAMEN_FLEET_API_ADDRESS",
    show_envvar=True,
    help="HOST:PORT where SuperNodes connect (port 0: any free port).",
)
@click.option(
    "--serverappio-api-address",
    default="127.0.0.1:9091",
    show_default=True,
    envvar="STAMEN_SERVERAPPIO_API_ADDRESS",
    show_envvar=True,
    help="HOST:PORT where ServerApp runners connect; this host only by default (a wider "
    "address is logged with a warning).",
)
@click.option(
    "--control-api-address",
    default="127.0.0.1:9093",
    show_default=True,
    envvar="STAMEN_CONTROL_API_ADDRESS",
    show_envvar=True,
    help="HOST:PORT where the `stamen` CLI submits and watches runs; this host only by "
    "default (a wider address without --auth-operator-tokens is logged with a warning).",
)
@click.option(
    "--database",
    default="stamen-superlink.db",
    show_default=True,
    metavar="PATH",
    envvar="STAMEN_DATABASE",
    show_envvar=True,
    help="SQLite file holding runs, nodes and undelivered messages, so that a restart "
    "loses none of them; ':memory:' keeps nothing.",
)
@click.option(
    "--heartbeat-interval",
    type=float,
    default=5.0,
    show_default=True,
    envvar="STAMEN_HEARTBEAT_INTERVAL",
    show_envvar=True,
    help="Seconds between a SuperNode's heartbeats; a node that misses its deadline is "
    "offline and the messages waiting for it get error replies.",
)
@click.option(
    "--max-bundle-size",
    type=float,
    default=MAX_BUNDLE_SIZE / 2**20,
    show_default=True,
    envvar="STAMEN_MAX_BUNDLE_SIZE",
    show_envvar=True,
    help="MiB: the largest app bundle `stamen run` may submit (it is sent in chunks).",
)
@click.option(
    "--run-lease",
    type=float,
    default=DEFAULT_RUN_LEASE,
    show_default=True,
    metavar="SECONDS",
    envvar="STAMEN_RUN_LEASE",
    show_envvar=True,
    help="Seconds a ServerApp runner's lease on its run lasts unrenewed (runners renew "
    "every third of it): the run of a runner silent that long is marked failed "
    "(`stamen-serverapp --resume RUN_ID` continues it).",
)
@click.option(
    "--delivery-lease",
    type=float,
    default=DEFAULT_DELIVERY_LEASE,
    show_default=True,
    metavar="SECONDS",
    envvar="STAMEN_DELIVERY_LEASE",
    show_envvar=True,
    help="Seconds an instruction a SuperNode pulled but has not answered waits before it "
    "is handed out again (a pull whose response was lost; the node runs it once).",
)
@click.option(
    "--grace-period",
    type=float,
    default=5.0,
    show_default=True,
    envvar="STAMEN_GRACE_PERIOD",
    show_envvar=True,
    help="Seconds a graceful shutdown waits for calls in flight before cancelling them.",
)
@metrics_address_option
@click.option(
    "--dashboard-address",
    metavar="[HOST:]PORT",
    envvar="STAMEN_DASHBOARD_ADDRESS",
    show_envvar=True,
    help="Serve the dashboard (runs, rounds, metrics, nodes; live) at http://HOST:PORT/ "
    "(a port alone: on 127.0.0.1). Off unless given.",
)
@click.option(
    "--enable-supernode-auth",
    is_flag=True,
    envvar="STAMEN_ENABLE_SUPERNODE_AUTH",
    show_envvar=True,
    help="Admit only SuperNodes whose public key is in --auth-list-public-keys; every "
    "Fleet request must be signed by that key.",
)
@click.option(
    "--auth-list-public-keys",
    type=_PATH,
    metavar="FILE",
    envvar="STAMEN_AUTH_LIST_PUBLIC_KEYS",
    show_envvar=True,
    help="The allowed SuperNode public keys, one OpenSSH line each (`make keys`, or "
    "`python -m stamen.auth node-key`, makes a pair).",
)
@click.option(
    "--auth-operator-tokens",
    type=_PATH,
    metavar="FILE",
    envvar="STAMEN_AUTH_OPERATOR_TOKENS",
    show_envvar=True,
    help="Require an operator token on Control and ServerAppIo: FILE lists NAME:SHA256 "
    "lines (`make keys` or `python -m stamen.auth operator-token` makes one). With TLS "
    "this, or --allow-unauthenticated-operators, is required.",
)
@click.option(
    "--allow-unauthenticated-operators",
    is_flag=True,
    envvar="STAMEN_ALLOW_UNAUTHENTICATED_OPERATORS",
    show_envvar=True,
    help="With TLS but no --auth-operator-tokens: let anyone who reaches Control and "
    "ServerAppIo submit, read and stop runs. For local development only; logged as a "
    "warning. Without it such a SuperLink refuses to start.",
)
@log_options
@click.version_option(package_version(), "--version", prog_name=PROG)
@click.pass_context
def main(ctx: click.Context, /, **options: Any) -> None:
    """Run a SuperLink: the hub that SuperNodes, ServerApp runners and operators talk to.

    It serves three gRPC APIs: Fleet (SuperNodes register, heartbeat, pull instructions
    and push replies), ServerAppIo (ServerApp runners create runs, send instructions and
    collect replies) and Control (list and stop runs). Each also answers the standard
    gRPC health check.

    Pass --certificates CA CERT KEY to serve over TLS, or --insecure to serve in plain
    text; one of the two is required. With TLS, Control and ServerAppIo require operator
    tokens (--auth-operator-tokens) unless --allow-unauthenticated-operators opens them.
    """
    try:
        settings = _settings(options)
    except ValidationError as exc:
        ctx.exit(_fail(describe(exc), EXIT_BAD_INPUT))
    except UserInputError as exc:
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    setup_logging(settings.log_level, fmt=settings.log_format)
    tune_allocator()
    logger.info("%s %s starting", PROG, package_version())
    try:
        ctx.exit(_run(settings))
    except UserInputError as exc:
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    except StamenError as exc:
        ctx.exit(_fail(str(exc), EXIT_FAILED))
    except asyncio.CancelledError:
        ctx.exit(_fail("forced exit: calls in flight were dropped", EXIT_CANCELLED))


def _settings(options: dict[str, Any]) -> SuperLinkSettings:
    separate = [options.pop(name) for name in ("ssl_ca_certfile", "ssl_certfile", "ssl_keyfile")]
    certificates = options.pop("certificates")
    if any(separate):
        if certificates:
            raise UserInputError("pass either --certificates or the --ssl-* options, not both")
        if not all(separate):
            raise UserInputError(
                "--ssl-ca-certfile, --ssl-certfile and --ssl-keyfile go together: pass all three"
            )
        certificates = separate
    if certificates:
        ca, cert, key = certificates
        options["certificates"] = Certificates(ca=ca, cert=cert, key=key)
    return SuperLinkSettings(**options)


def _run(settings: SuperLinkSettings) -> int:
    async def serve_reloading(stop: asyncio.Event) -> None:
        credentials = Credentials(settings)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, credentials.reload)
        try:
            await serve(settings, stop=stop, credentials=credentials)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    serve_until_signalled(serve_reloading, "the SuperLink")
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    return fail(PROG, message, code)


if __name__ == "__main__":
    main()
