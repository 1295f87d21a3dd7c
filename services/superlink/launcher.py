"""RunnerLauncher: one ServerApp runner process per submitted run, on the SuperLink's machine.

A submitted run's ServerApp runs in its own process (`python -m stamen.runner --run-id N`),
isolated from the SuperLink and from the other runs: it imports the app from the run's
unpacked bundle, connects to this SuperLink's ServerAppIo API on the loopback address,
and leaves its result files in the run's folder. What it prints becomes the run's log.
When ServerAppIo requires operator tokens, each runner gets a launch token of its own
in its environment (`STAMEN_OPERATOR_TOKEN`: never on its command line, which any local
user can read, and never logged), revoked when it exits.
When it exits, the SuperLink is told how (`on_exit`): a run it did not finish is marked
failed with the reason. Stopping a run, or the SuperLink, sends SIGTERM (the runner marks
the run stopped) and, past a grace period, SIGKILL.

The runner is reached only as a process (its command line), never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from types import TracebackType

from stamen.auth.tokens import LaunchTokens
from stamen.transport.grpc.guard import OPERATOR_TOKEN_ENV

from .control import ExitFn
from .runfiles import RunFiles

__all__ = ["RunnerLauncher"]

logger = logging.getLogger(__name__)

STOP_GRACE = 10.0
"""Seconds a runner gets to end after SIGTERM before it is killed."""


class RunnerLauncher:
    """Starts and watches runner processes; an async context manager owns them all."""

    def __init__(
        self,
        files: RunFiles,
        serverappio: str,
        *,
        root_certificates: Path | None = None,
        tokens: LaunchTokens | None = None,
        stop_grace: float = STOP_GRACE,
        fleet_address: str | None = None,
    ) -> None:
        """`fleet_address`: where SuperNodes reach this SuperLink, which a runner waiting
        for nodes names."""
        self._files = files
        self._serverappio = serverappio
        self._fleet_address = fleet_address
        self._root_certificates = root_certificates
        self._tokens = tokens
        self._stop_grace = stop_grace
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> RunnerLauncher:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for run_id in list(self._processes):
            self.stop(run_id)
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, traceback)

    def launch(self, run_id: int, app_dir: Path, on_exit: ExitFn) -> None:
        """Start the runner of `run_id` (importing from `app_dir`) in the background."""
        if self._tasks is None:
            raise RuntimeError("the launcher is not running")
        self._tasks.create_task(self._run(run_id, app_dir, on_exit), name=f"runner-{run_id}")

    def stop(self, run_id: int) -> None:
        """SIGTERM the run's runner (if it still runs); SIGKILL after the grace period."""
        process = self._processes.get(run_id)
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        if self._tasks is not None:
            self._tasks.create_task(self._kill_later(process), name=f"runner-{run_id}-kill")

    async def stop_all(self) -> None:
        """Stop every runner and wait (up to the grace period, then kill) for them."""
        processes = list(self._processes.values())
        for run_id in list(self._processes):
            self.stop(run_id)
        for process in processes:
            await self._kill_later(process)

    def command(self, run_id: int, app_dir: Path) -> list[str]:
        security = (
            ["--insecure"]
            if self._root_certificates is None
            else ["--root-certificates", str(self._root_certificates)]
        )
        return [
            sys.executable,
            "-m",
            "stamen.runner",
            "--run-id",
            str(run_id),
            "--dir",
            str(app_dir),
            "--server",
            self._serverappio,
            *security,
            *([] if self._fleet_address is None else ["--fleet-address", self._fleet_address]),
            "--output-dir",
            str(self._files.results_folder(run_id)),
        ]

    async def _run(self, run_id: int, app_dir: Path, on_exit: ExitFn) -> None:
        # The SuperLink's own STAMEN_* settings are not the runner's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMEN_")}
        env["PYTHONUNBUFFERED"] = "1"
        tokens = self._tokens
        if tokens is None:
            await self._watch(run_id, app_dir, env, on_exit)
            return
        token = tokens.issue(f"runner of run {run_id}")
        try:
            await self._watch(run_id, app_dir, {**env, OPERATOR_TOKEN_ENV: token}, on_exit)
        finally:
            tokens.revoke(token)

    async def _watch(
        self, run_id: int, app_dir: Path, env: dict[str, str], on_exit: ExitFn
    ) -> None:
        last_error = ""
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(run_id, app_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=app_dir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._files.close_log(run_id)
            on_exit(run_id, -1, f"the ServerApp runner did not start: {exc}")
            return
        self._processes[run_id] = process
        logger.info("run %d: ServerApp runner started (pid %d)", run_id, process.pid)
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                self._files.append_log(run_id, line)
                text = line.decode(errors="replace").strip()
                if "error" in text.lower():
                    last_error = text
            code = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        finally:
            self._processes.pop(run_id, None)
            self._files.close_log(run_id)
        logger.info("run %d: ServerApp runner exited with code %d", run_id, code)
        on_exit(run_id, code, last_error)

    async def _kill_later(self, process: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(self._stop_grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
