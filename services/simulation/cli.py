"""`stamen-simulation --server-app server:app --client-app client:app --num-supernodes N`.

The only place that exits the process: bad input (an app reference that does not load, a
bad backend config) is one line on stderr and exit code 2; a run that fails exits 1;
SIGINT/SIGTERM stop the run cleanly (workers ended, shared memory unlinked) and exit
128 + the signal's number, and a second signal cuts the clean-up short (EXIT_CANCELLED):
the signal policy and exit codes of every service (`stamen.common.signals`).

Start-up is ordered to hide the apps' import time: references are checked without
importing, then the workers come first. Where it is safe (`fork_blocker` in
`stamen.workers.launcher`), this process imports the ClientApp and forks the workers from
itself, so that the import is paid once for all; else the worker pool's forkserver is
launched (it imports the ClientApp at once). Only then does this process import the rest
of Stamen and the ServerApp. Before all that, `--output-dir` forks the child that will
draw metrics.png (`plotter`): it imports matplotlib meanwhile, on another core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from stamen.common.cli import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    ServiceCommand,
    exit_stopped,
    fail,
    flwr_compat_option,
    package_version,
)
from stamen.common.errors import StamenError, UserInputError
from stamen.common.logging import setup_logging
from stamen.common.options import dir_option, log_options
from stamen.common.project import open_project
from stamen.common.signals import Served, serve_until_signalled, until_stopped
from stamen.workers.launcher import close_context, default_start_method, fork_blocker, open_context
from stamen.workers.resources import plan_workers, usable_cpus

from .ending import end_process
from .progress import RoundProgress, StatusLine, stderr_above
from .references import check_reference
from .settings import SimulationSettings, describe

if TYPE_CHECKING:
    from stamen.server.history import History
    from stamen.workers import WorkerPool

    from .plotter import Plotter

__all__ = ["entry", "main", "serve", "simulation"]

logger = logging.getLogger(__name__)

PROG = "stamen-simulation"

FORKSERVER_STOP_TIMEOUT = 5.0
"""Seconds to wait for the forkserver to exit once the pool is closed."""


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`--version`, looked up only when asked (importlib.metadata costs start-up time)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{PROG}, version {package_version()}")
    ctx.exit()


@click.command(name=PROG, cls=ServiceCommand)
@click.option(
    "--server-app",
    metavar="MODULE:ATTR",
    envvar="STAMEN_SERVER_APP",
    show_envvar=True,
    help="The ServerApp, for example server:app (imported from --dir). Default: the "
    "serverapp of the app's pyproject.toml ([tool.stamen.app.components]).",
)
@click.option(
    "--client-app",
    metavar="MODULE:ATTR",
    envvar="STAMEN_CLIENT_APP",
    show_envvar=True,
    help="The ClientApp, for example client:app; each worker process imports it once. "
    "Default: the clientapp of the app's pyproject.toml.",
)
@click.option(
    "--num-supernodes",
    type=int,
    required=True,
    envvar="STAMEN_NUM_SUPERNODES",
    show_envvar=True,
    help="Virtual SuperNodes to simulate. Node i gets node config partition-id=i and "
    "num-partitions=N (a legacy client_fn(cid) gets cid 'i').",
)
@click.option(
    "--backend-config",
    metavar="JSON|PATH",
    envvar="STAMEN_BACKEND_CONFIG",
    show_envvar=True,
    help='The worker pool, as JSON text or a JSON file: {"num_workers": 2, '
    '"client_resources": {"num_cpus": 1, "num_gpus": 0.5}}. Default: one worker per '
    "usable CPU; fractions of a GPU let that many workers share one.",
)
@click.option(
    "--run-config",
    default="",
    metavar="'KEY=VALUE ...'",
    envvar="STAMEN_RUN_CONFIG",
    show_envvar=True,
    help="Settings both apps read from context.run_config, for example "
    "'num-server-rounds=3 lr=0.1' (or a .toml file); they override the defaults of the "
    "app's pyproject.toml ([tool.stamen.app.config]), whose keys they must be.",
)
@click.option(
    "--seed",
    type=int,
    envvar="STAMEN_SEED",
    show_envvar=True,
    help="Put seed=SEED in the run config: the ServerApp samples nodes with it, so a "
    "run repeats exactly, whatever the number of workers.",
)
@dir_option
@click.option(
    "--output-dir",
    metavar="DIR",
    envvar="STAMEN_OUTPUT_DIR",
    show_envvar=True,
    help="Write the run's results here: history.json, metrics.csv, final_arrays.npz "
    "(and final_state_dict.pt for a torch app's state dict) and metrics.png (which needs "
    "matplotlib: pip install 'stamen[plot]').",
)
@click.option(
    "--save-final-arrays",
    metavar="PATH",
    envvar="STAMEN_SAVE_FINAL_ARRAYS",
    show_envvar=True,
    help="Save the final model's arrays to this .npz file (as --output-dir's "
    "final_arrays.npz; checked for writing before the run starts).",
)
@click.option(
    "--dashboard-address",
    metavar="[HOST:]PORT",
    envvar="STAMEN_DASHBOARD_ADDRESS",
    show_envvar=True,
    help="Serve the SuperLink's live dashboard (rounds, metric charts, nodes) at "
    "http://HOST:PORT/ while the simulation runs (a port alone: on 127.0.0.1).",
)
@log_options
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
@flwr_compat_option
@click.pass_context
def simulation(ctx: click.Context, /, **options: Any) -> None:
    """Simulate a federation on this machine: a SuperLink, NUM-SUPERNODES virtual
    SuperNodes running the ClientApp in a pool of worker processes, and the ServerApp.

    The apps are the ones you deploy, unchanged. Logs go to stderr (with a progress line
    per round on a terminal); the per-round summary table goes to stdout at the end.
    """
    try:
        settings = SimulationSettings(**_with_project(options))
    except ValidationError as exc:
        ctx.exit(_fail(describe(exc), EXIT_BAD_INPUT))
    except UserInputError as exc:
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    status = None
    if sys.stderr.isatty():  # the line writes to its own copy of the terminal (open till exit)
        status = StatusLine(os.fdopen(os.dup(2), "w", buffering=1))
    setup_logging(
        settings.log_level, None if status is None else status.stream, fmt=settings.log_format
    )
    if settings.output_dir is not None:
        try:  # found out now, not after the run
            settings.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            ctx.exit(
                _fail(f"--output-dir: cannot create {exc.filename}: {exc.strerror}", EXIT_BAD_INPUT)
            )
        from .plotter import Plotter

        plotter = Plotter.start()  # first: it imports matplotlib while this process imports
    else:
        plotter = None
    try:
        _simulate_and_report(ctx, settings, status, plotter)
    finally:
        if plotter is not None:
            plotter.close()


def _simulate_and_report(
    ctx: click.Context,
    settings: SimulationSettings,
    status: StatusLine | None,
    plotter: Plotter | None,
) -> None:
    """Run the simulation, then print its summary table and write what was asked for."""
    try:
        with contextlib.nullcontext() if status is None else stderr_above(status):
            served = _simulate(settings, status)
    except UserInputError as exc:
        ctx.exit(_fail(str(exc), EXIT_BAD_INPUT))
    except StamenError as exc:
        ctx.exit(_fail(str(exc), EXIT_FAILED))
    except asyncio.CancelledError:
        ctx.exit(_fail("forced exit: the clean-up was cut short", EXIT_CANCELLED))
    history = served.result
    if history is None:  # a signal stopped the run
        assert served.signal is not None
        ctx.exit(_fail(f"stopped by {served.signal.name}", exit_stopped(served.signal)))
    from stamen.server.summary import summary_table  # imported by the run already

    table = summary_table(history)
    if table:
        click.echo(table)
    if settings.output_dir is not None:
        _write_results(ctx, history, settings.output_dir, plotter)
    if settings.save_final_arrays is not None:
        _save_final_arrays(ctx, history, settings.save_final_arrays)


def _with_project(options: dict[str, Any]) -> dict[str, Any]:
    """The options with the app's pyproject applied: its components fill a missing
    --server-app / --client-app, its config is the run config --run-config overrides."""
    project, run_config = open_project(options["directory"], options["run_config"])
    return {
        **options,
        "server_app": project.component("serverapp", options["server_app"], "--server-app"),
        "client_app": project.component("clientapp", options["client_app"], "--client-app"),
        "run_config": run_config,
    }


def entry() -> None:
    """The `stamen-simulation` command: `main`, then the process ends without the
    interpreter's finalization (`ending`), which would only delay the exit."""
    try:
        main()
    except SystemExit as exc:
        if not isinstance(exc.code, int):
            raise
        end_process(exc.code)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command with `argv` (default: the process's arguments); it raises
    SystemExit with the exit code, so that a caller in the same process gets it."""
    try:
        code = simulation.main(args=argv, prog_name=PROG, standalone_mode=False) or 0
    except click.ClickException as exc:
        code = _fail(exc.format_message(), EXIT_BAD_INPUT)
    except click.Abort:
        code = EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C before the event loop's handlers were installed
        code = _fail("stopped by SIGINT", exit_stopped(signal.SIGINT))
    # The process ends: collecting everything once more (torch's objects: most of a
    # second) would only delay the exit. Objects are still finalized as they are freed.
    gc.freeze()
    sys.exit(code)


def _simulate(settings: SimulationSettings, status: StatusLine | None) -> Served[History | None]:
    """The run's History (None when a signal stopped it) and the first signal received."""
    check_reference(settings.server_app, settings.directory)
    check_reference(settings.client_app, settings.directory)
    with _workers_first(settings) as pool:
        progress = None if status is None else RoundProgress(status)
        began = time.perf_counter()

        async def simulate(stop: asyncio.Event) -> History | None:
            try:
                return await serve(settings, stop=stop, pool=pool, observer=progress)
            finally:
                if progress is not None:
                    progress.close()

        served = serve_until_signalled(simulate, "the simulation")
    if served.result is not None:
        logger.info("simulation finished in %.2fs", time.perf_counter() - began)
    return served


async def serve(
    settings: SimulationSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    pool: WorkerPool | None = None,
    observer: RoundProgress | None = None,
) -> History | None:
    """Simulate the federation of `settings` and return the run's History; None when
    `stop` was set first (the run is cancelled: workers ended, shared memory unlinked).

    `ready` is set once the simulation starts; `pool`: workers already forked (else the
    engine starts its own); `observer` follows the rounds.
    """
    # Imported now, while the workers load the ClientApp: this is the other half of
    # start-up (the SuperLink, the agents, the runner).
    from .engine import run_simulation_async

    work = run_simulation_async(
        settings.server_app,
        settings.client_app,
        settings.num_supernodes,
        settings.backend_config,
        settings.run_config,
        seed=settings.seed,
        directory=settings.directory,
        observer=observer,
        pool=pool,
        dashboard_address=settings.dashboard_address,
    )
    if ready is not None:
        ready.set()
    return await until_stopped(work, stop)


@contextlib.contextmanager
def _workers_first(settings: SimulationSettings) -> Iterator[WorkerPool | None]:
    """Get the workers going before anything else: import the ClientApp here and fork
    them from this process (yielding their pool) where that is safe, else launch the
    pool's forkserver with the ClientApp now (it imports the app while this process
    imports the rest; the engine makes the pool, which uses it)."""
    backend = settings.backend_config
    start_method = default_start_method(backend.client_resources.num_gpus)
    specs = plan_workers(
        num_workers=backend.num_workers,
        num_cpus=backend.client_resources.num_cpus,
        num_gpus=0.0,
        cpus=usable_cpus(),
        gpus=[],
    )
    if start_method != "forkserver":  # spawn: each worker imports the app itself
        yield None
        return
    if fork_blocker(start_method, specs[0].threads) is None:
        from stamen.client import ClientApp
        from stamen.common.loading import load_app

        from .backend import prefork_warm, worker_pool

        load_app(settings.client_app, ClientApp, settings.directory)
        pool = worker_pool(settings.client_app, settings.directory, backend)
        prefork_warm(pool)  # when it may not after all, the pool starts its workers itself
        yield pool
        return
    open_context(start_method, settings.client_app, str(settings.directory), specs[0].threads)
    try:
        yield None
    finally:
        stopper = threading.Thread(
            target=close_context, args=(start_method,), name="stamen-forkserver-stop", daemon=True
        )
        stopper.start()
        stopper.join(FORKSERVER_STOP_TIMEOUT)


def _write_results(
    ctx: click.Context, history: History, directory: Path, plotter: Plotter | None
) -> None:
    from stamen.server.plot import plot_history
    from stamen.server.results import PLOT_FILE, write_results

    # A torch app gets its final model as a state dict too: the ServerApp imported torch
    # and the arrays have a state dict's names (not "0", "1", ...).
    names = list(history.final_arrays or ())
    state_dict = "torch" in sys.modules and bool(names) and not all(n.isdigit() for n in names)
    try:
        written = write_results(history, directory, torch_state_dict=state_dict, plot=False)
        picture = directory / PLOT_FILE  # drawn last, as write_results would
        drawn = None if plotter is None else plotter.draw(history, picture)
        if drawn is None:  # the plotter could not: draw it here
            drawn = plot_history(history, picture)
        if drawn:
            written.append(picture)
    except OSError as exc:
        ctx.exit(_fail(f"--output-dir: cannot write the results: {exc}", EXIT_FAILED))
    logger.info("results in %s: %s", directory, ", ".join(path.name for path in written))


def _save_final_arrays(ctx: click.Context, history: History, path: Path) -> None:
    from stamen.server.results import save_final_arrays

    try:
        save_final_arrays(history, path)
    except (OSError, ValueError) as exc:
        ctx.exit(_fail(f"--save-final-arrays: {exc}", EXIT_FAILED))
    logger.info("final arrays saved to %s", path)


def _fail(message: str, code: int) -> int:
    return fail(PROG, message, code)


if __name__ == "__main__":
    entry()
