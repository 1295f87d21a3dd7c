"""`stamen run [APP_DIR] [FEDERATION]`: run the app in simulation or on a SuperLink.

The run config is the app's defaults with `--run-config` applied, checked here against
the keys the app declares. A federation without an address runs the app in a local
simulation (the `stamen-simulation` command, as a child process); one with an address
gets the app's bundle over its Control API, in chunks (`PushBundle`), then the run that
names it (`SubmitRun`), and launches the run; `--stream` then follows
its log to the end and exits with the run's outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click

from stamen.codec.objects import iter_chunks
from stamen.common.bundle import build_bundle
from stamen.common.project import open_project
from stamen.common.run import Run, RunStatus
from stamen.transport.grpc.clients import GrpcControlClient

from .app import Failed, handled
from .build import max_size_option
from .control import call, describe_status, print_logs, token_option
from .federation import Federation, resolve_federation, with_operator_token
from .keys import sign_option, signed

__all__ = ["run", "simulation_command"]


@click.command()
@click.argument("app_dir", default=".", type=click.Path(path_type=Path))
@click.argument("federation", required=False)
@click.option(
    "--run-config",
    multiple=True,
    metavar="'KEY=VALUE ...'",
    help="Overrides of the app's [tool.stamen.app.config] (repeatable; or a .toml file).",
)
@click.option("--stream", is_flag=True, help="Follow the run's log to its end (deployment).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@sign_option
@max_size_option
@token_option
@handled
def run(
    app_dir: Path,
    federation: str | None,
    run_config: tuple[str, ...],
    stream: bool,
    fmt: str,
    sign_key: Path | None,
    max_size: float,
    operator_token_file: Path | None,
) -> None:
    """Run the app in APP_DIR on FEDERATION (default: the pyproject's default one)."""
    overrides = " ".join(run_config)
    project, config = open_project(app_dir, overrides)
    target = resolve_federation(project, federation)
    if target.is_simulation:
        code = _simulate(app_dir, target, overrides)
        if code:
            raise Failed("", code)  # the simulation printed its own error line
        return
    target = with_operator_token(target, operator_token_file)
    bundle = signed(build_bundle(app_dir, int(max_size * 2**20)), sign_key)

    async def submit(client: GrpcControlClient) -> Run:
        await client.push_bundle(bundle.hash, len(bundle.data), _chunks(bundle.data))
        submitted = await client.submit_run(bundle.hash, config)
        _announce(submitted, target, fmt)
        if not stream:
            return submitted
        return await print_logs(client, submitted.run_id, follow=True)

    outcome = call(target, submit)
    if stream and outcome.sub_status != RunStatus.COMPLETED:
        raise Failed(f"run {outcome.run_id} {describe_status(outcome)}")


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


def _announce(submitted: Run, federation: Federation, fmt: str) -> None:
    if fmt == "json":
        summary = {"run-id": submitted.run_id, "bundle": submitted.bundle}
        click.echo(json.dumps({**summary, "federation": federation.name}))
    else:
        click.echo(
            f"run {submitted.run_id} submitted to {federation.name} "
            f"(bundle {submitted.bundle[:12]}); follow it: stamen log {submitted.run_id} "
            "--follow",
            err=True,
        )


def simulation_command(app_dir: Path, federation: Federation, overrides: str) -> list[str]:
    """The `stamen-simulation` command line that runs the app on `federation`."""
    options = federation.options
    command = [
        *_simulation_program(),
        "--dir",
        str(app_dir),
        "--num-supernodes",
        str(options["num-supernodes"]),
    ]
    if overrides:
        command += ["--run-config", overrides]
    resources = {
        key.removeprefix("backend.client-resources.").replace("-", "_"): value
        for key, value in options.items()
        if key.startswith("backend.client-resources.")
    }
    if resources:
        command += ["--backend-config", json.dumps({"client_resources": resources})]
    return command


def _simulation_program() -> list[str]:
    script = Path(sys.executable).parent / "stamen-simulation"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "stamen.simulation.cli"]


def _simulate(app_dir: Path, federation: Federation, overrides: str) -> int:
    process = subprocess.Popen(simulation_command(app_dir, federation, overrides))
    try:
        return process.wait()
    except KeyboardInterrupt:  # the simulation got the same Ctrl-C: let it clean up
        return process.wait()
