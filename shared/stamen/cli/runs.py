"""`stamen ls`, `log RUN_ID`, `stop RUN_ID`, `pull RUN_ID -o DIR`: a SuperLink's runs.

Each names its SuperLink by a federation of the app in APP_DIR (default: the current
folder and its default federation), or directly with `--superlink HOST:PORT` and
`--root-certificates CA` or `--insecure`, and `--operator-token-file` when the SuperLink
requires operator tokens.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stamen.common.errors import ConfigError, IntegrityError
from stamen.common.project import read_project
from stamen.common.run import Run, RunStatus
from stamen.transport.grpc.clients import GrpcControlClient
from stamen.transport.types import ResultFile

from .app import Failed, handled
from .control import call, describe_status, print_logs, token_option
from .federation import (
    Federation,
    direct_federation,
    resolve_federation,
    with_operator_token,
)

__all__ = ["log", "ls", "pull", "stop"]

F = TypeVar("F", bound=Callable[..., Any])


def _where(command: F) -> F:
    """APP_DIR, FEDERATION and the --superlink options."""
    for decorator in reversed(
        (
            click.argument("app_dir", default=".", type=click.Path(path_type=Path)),
            click.argument("federation", required=False),
            click.option("--superlink", metavar="HOST:PORT", help="A SuperLink's Control API."),
            click.option(
                "--root-certificates",
                type=click.Path(dir_okay=False, path_type=Path),
                help="With --superlink: the CA of its certificate (TLS).",
            ),
            click.option("--insecure", is_flag=True, help="With --superlink: no TLS."),
            token_option,
        )
    ):
        command = decorator(command)
    return command


def _federation(options: dict[str, Any]) -> Federation:
    return with_operator_token(_where_to(options), options["operator_token_file"])


def _where_to(options: dict[str, Any]) -> Federation:
    if options["superlink"]:
        return direct_federation(
            options["superlink"], options["root_certificates"], options["insecure"]
        )
    if options["root_certificates"] or options["insecure"]:
        raise ConfigError("--root-certificates and --insecure go with --superlink HOST:PORT")
    federation = resolve_federation(read_project(options["app_dir"]), options["federation"])
    if federation.is_simulation:
        raise ConfigError(
            f"federation {federation.name!r} is a local simulation: it keeps no runs "
            "(name a federation with an address, or pass --superlink HOST:PORT)"
        )
    return federation


@click.command()
@click.option("--run-id", type=int, help="Show this run only, with its details.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_where
@handled
def ls(run_id: int | None, fmt: str, **where: Any) -> None:
    """List the SuperLink's runs (or one of them)."""

    async def fetch(client: GrpcControlClient) -> list[Run]:
        if run_id is not None:
            return [await client.get_run(run_id)]
        return await client.list_runs()

    runs = call(_federation(where), fetch)
    if fmt == "json":
        click.echo(json.dumps([_as_dict(run) for run in runs], indent=1))
        return
    click.echo(_table(runs))


def _as_dict(run: Run) -> dict[str, Any]:
    return {
        "run-id": run.run_id,
        "status": run.status,
        "sub-status": run.sub_status,
        "details": run.details,
        "server-app": run.server_app,
        "client-app": run.client_app,
        "bundle": run.bundle,
        "run-config": run.run_config,
        "created-at": run.created_at,
        "started-at": run.started_at,
        "finished-at": run.finished_at,
    }


def _table(runs: list[Run]) -> str:
    header = ("run id", "status", "app", "bundle", "created", "elapsed")
    rows = [header]
    now = time.time()
    for run in runs:
        end = run.finished_at if run.status == RunStatus.FINISHED else now
        elapsed = f"{end - run.started_at:.1f}s" if run.started_at else "-"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at))
        status = describe_status(run)
        app = run.server_app or "-"
        rows.append((str(run.run_id), status, app, run.bundle[:12] or "-", created, elapsed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@click.command()
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep following until the run finishes.")
@_where
@handled
def log(run_id: int, follow: bool, **where: Any) -> None:
    """Print the ServerApp log of RUN_ID (with --follow, to the run's end; the exit code
    then says how it ended)."""

    async def read(client: GrpcControlClient) -> Run:
        return await print_logs(client, run_id, follow=follow)

    outcome = call(_federation(where), read)
    if follow and outcome.sub_status != RunStatus.COMPLETED:
        raise Failed(f"run {run_id} {describe_status(outcome)}")


@click.command()
@click.argument("run_id", type=int)
@_where
@handled
def stop(run_id: int, **where: Any) -> None:
    """Stop RUN_ID: its ServerApp ends and its nodes get no more work for it."""

    async def stop_it(client: GrpcControlClient) -> Run:
        return await client.stop_run(run_id)

    stopped = call(_federation(where), stop_it)
    click.echo(f"run {run_id} {describe_status(stopped)}")


@click.command()
@click.argument("run_id", type=int)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the results to (created if need be).",
)
@_where
@handled
def pull(run_id: int, output: Path, **where: Any) -> None:
    """Download the results of RUN_ID: history.json, metrics.csv, final_arrays.npz (and
    whatever else the run left), each checked against its sha256."""

    async def download(client: GrpcControlClient) -> list[ResultFile]:
        files = await client.list_results(run_id)
        if not files:
            run = await client.get_run(run_id)
            raise Failed(
                f"run {run_id} ({describe_status(run)}) has no results in the SuperLink"
                + ("" if run.status == RunStatus.FINISHED else " yet")
            )
        for result in files:
            data = bytearray()
            async for chunk in client.pull_result(run_id, result.name):
                data += chunk
            if hashlib.sha256(data).hexdigest() != result.sha256:
                raise IntegrityError(f"result {result.name!r} does not match its sha256")
            path = output / result.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return files

    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output: cannot create {str(output)!r}: {exc.strerror}") from None
    files = call(_federation(where), download)
    for result in files:
        click.echo(f"{output / result.name} ({result.size} bytes)")
