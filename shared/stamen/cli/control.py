"""Talking to a federation's SuperLink over its Control API, for the `stamen` commands.

Every call carries the operator's token when there is one: `--operator-token-file FILE`
(or $STAMEN_OPERATOR_TOKEN_FILE), else the federation's `operator-token-file`, else the
token itself in $STAMEN_OPERATOR_TOKEN. A SuperLink that requires tokens refuses a call
without one, or with one it does not know: one error line, exit code 2. No token is
sent over an insecure channel.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from stamen.common.cli import run as run_loop
from stamen.common.errors import UnavailableError
from stamen.common.run import Run, RunStatus
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcControlClient
from stamen.transport.grpc.guard import operator_token, use_operator_token

from .federation import Federation

__all__ = ["LOG_WAIT", "call", "describe_status", "print_logs", "token_option"]

LOG_WAIT = 10.0
"""Seconds one log request waits for more lines of a running run."""

RETRIES = 5
"""Times following a log retries a SuperLink that cannot be reached, backing off."""

T = TypeVar("T")

token_option = click.option(
    "--operator-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STAMEN_OPERATOR_TOKEN_FILE",
    show_envvar=True,
    help="File holding the operator token, for a SuperLink started with "
    "--auth-operator-tokens (default: the federation's operator-token-file). Without "
    "either, the token in STAMEN_OPERATOR_TOKEN (if set) is sent.",
)


def call(federation: Federation, work: Callable[[GrpcControlClient], Awaitable[T]]) -> T:
    """Run `work` with a Control client of `federation`'s SuperLink, in a fresh loop."""
    address = federation.address
    assert address is not None
    token = None if federation.insecure else operator_token(federation.operator_token_file)

    async def main() -> T:
        channel = connect(
            address,
            root_certificates=federation.root_certificates,
            insecure=federation.insecure,
        )
        if token is not None:
            use_operator_token(channel, token)
        try:
            return await work(GrpcControlClient(channel))
        finally:
            channel.close()

    return run_loop(main())


async def print_logs(client: GrpcControlClient, run_id: int, *, follow: bool) -> Run:
    """Write the run's log to stdout; with `follow`, until the run has finished and its
    log is complete. The run as it was last seen."""
    offset = 0
    failures = 0
    while True:
        try:
            chunk = await client.get_logs(run_id, offset, LOG_WAIT if follow else 0.0)
        except UnavailableError:
            failures += 1
            if failures > RETRIES:
                raise
            await asyncio.sleep(failures)  # back off: the SuperLink may be restarting
            continue
        failures = 0
        if chunk.text:
            sys.stdout.buffer.write(chunk.text)
            sys.stdout.buffer.flush()
        offset = chunk.next_offset
        finished = chunk.run.status == RunStatus.FINISHED
        if not chunk.text and (finished or not follow):
            return chunk.run


def describe_status(run: Run) -> str:
    """`running`, `completed`, `failed: why`, ... as a person reads a run's state."""
    if run.status != RunStatus.FINISHED:
        return run.status
    return f"{run.sub_status}: {run.details}" if run.details else run.sub_status
