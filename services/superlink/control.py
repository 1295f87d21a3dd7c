"""ControlHandler: the Control API (what operators' tools call), over the router.

Besides listing and stopping runs, it takes submitted app bundles: the bundle arrives in
chunks (`push_bundle`, up to `max_bundle_size` bytes, checked against its hash) and is
kept in the SuperLink's RunFiles; `submit_run` names it by hash, a run is created for it
(its components read from the bundle's pyproject) and the launcher starts the run's
ServerApp runner process. A runner that
exits without finishing its run (a crash, a kill) gets the run marked failed with the
reason. Logs and result files of launched runs are read back from RunFiles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Protocol

from stamen.common.buffers import Buffer
from stamen.common.bundle import MAX_BUNDLE_SIZE, bundle_hash
from stamen.common.errors import (
    IntegrityError,
    RequestTooLargeError,
    RunNotRunningError,
    UnavailableError,
)
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.transport.types import LogChunk, ResultFile

from .core import new_id, transition_run
from .router import Router
from .runfiles import RunFiles

__all__ = ["ControlHandler", "ExitFn", "Launcher"]

logger = logging.getLogger(__name__)

ExitFn = Callable[[int, int, str], None]
"""Told (run id, exit code, the last error line the runner printed) when a runner exits."""


class Launcher(Protocol):
    """What starts a submitted run's ServerApp (`RunnerLauncher`: a process per run)."""

    def launch(self, run_id: int, app_dir: Path, on_exit: ExitFn) -> None: ...

    def stop(self, run_id: int) -> None: ...


class ControlHandler:
    """Implements `stamen.transport.api.ControlApi`."""

    def __init__(
        self, router: Router, files: RunFiles | None = None, launcher: Launcher | None = None
    ) -> None:
        self._router = router
        self._state = router.state
        self._files = files
        self.launcher = launcher
        self.max_bundle_size = MAX_BUNDLE_SIZE
        """Bytes: a larger bundle is refused (`stamen-superlink --max-bundle-size`)."""

    async def list_runs(self) -> list[Run]:
        return self._state.list_runs()

    async def get_run(self, run_id: int) -> Run:
        return self._state.get_run(run_id)

    async def stop_run(self, run_id: int) -> Run:
        """Finish the run as stopped; its open messages are dropped and its pulls return
        nothing; a launched runner is told to stop. A finished run: RunNotRunningError."""
        run = self._state.get_run(run_id)
        now = self._router.clock.time()
        stopped = transition_run(
            run, RunStatus.FINISHED, RunStatus.STOPPED, "stopped by an operator", now
        )
        self._state.update_run(stopped)
        self._router.run_finished(stopped)
        if self.launcher is not None:
            self.launcher.stop(run_id)
        return stopped

    async def push_bundle(
        self, bundle: str, total_size: int, chunks: AsyncIterable[Buffer]
    ) -> bool:
        """Keep the bundle whose sha256 is `bundle` (False: it was kept already).
        RequestTooLargeError above `max_bundle_size`; IntegrityError when the bytes do not
        match the hash or the size announced; ConfigError when it is not an app."""
        files = self._launching()
        if total_size > self.max_bundle_size:
            raise RequestTooLargeError(_too_large(total_size, self.max_bundle_size))
        if files.has_bundle(bundle):  # IntegrityError for what is not a sha256
            return False
        received = bytearray()
        async for chunk in chunks:
            received += chunk
            if len(received) > total_size:  # never more than the limit in memory
                raise IntegrityError(
                    f"bundle {bundle[:12]}: more than the {total_size} bytes announced arrived"
                )
        data = bytes(received)
        if len(data) != total_size:
            raise IntegrityError(
                f"bundle {bundle[:12]}: {len(data)} bytes arrived, {total_size} were announced"
            )
        if bundle_hash(data) != bundle:
            raise IntegrityError(f"bundle {bundle[:12]}: its bytes do not match its sha256")
        await asyncio.to_thread(files.store_bundle, data)  # unzipping takes a while
        logger.info("bundle %s stored (%d bytes)", bundle[:12], len(data))
        return True

    async def submit_run(self, bundle: str, run_config: UserConfig) -> Run:
        """Create a run of the pushed bundle `bundle` and launch its ServerApp runner."""
        files = self._launching()
        app = await asyncio.to_thread(files.stored_app, bundle)
        launcher = self.launcher
        assert launcher is not None  # _launching checked it
        run = Run(
            new_id(self._run_exists),
            server_app=app.server_app,
            client_app=app.client_app,
            run_config=dict(run_config),
            created_at=self._router.clock.time(),
            bundle=app.bundle,
        )
        self._state.add_run(run)
        logger.info(
            "run %d submitted (bundle %s, server app %r, client app %r)",
            run.run_id,
            app.bundle[:12],
            app.server_app,
            app.client_app,
            extra={"run_id": run.run_id},
        )
        files.open_log(run.run_id)
        launcher.launch(run.run_id, app.directory, self._runner_exited)
        return run

    async def get_logs(self, run_id: int, offset: int, timeout: float) -> LogChunk:
        self._state.get_run(run_id)  # RunNotFoundError for an unknown run
        text = b""
        if self._files is not None:
            text = await self._files.wait_log(run_id, offset, timeout)
        return LogChunk(text, offset + len(text), self._state.get_run(run_id))

    async def list_results(self, run_id: int) -> list[ResultFile]:
        self._state.get_run(run_id)
        return [] if self._files is None else self._files.results(run_id)

    async def pull_result(self, run_id: int, name: str) -> AsyncIterator[bytes]:
        self._state.get_run(run_id)
        if self._files is None:
            raise UnavailableError("this SuperLink keeps no result files")
        async with aclosing(self._files.result_chunks(run_id, name)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _launching(self) -> RunFiles:
        """The run files of a SuperLink that launches runs; UnavailableError for one that
        does not (an in-process SuperLink without a launcher)."""
        if self.launcher is None or self._files is None:
            raise UnavailableError("this SuperLink does not launch runs (no runner launcher)")
        return self._files

    def _run_exists(self, run_id: int) -> bool:
        return any(run.run_id == run_id for run in self._state.list_runs())

    def _runner_exited(self, run_id: int, code: int, reason: str) -> None:
        """A runner ended: a run it left unfinished failed, with why."""
        run = self._state.get_run(run_id)
        if run.status == RunStatus.FINISHED:
            return
        details = f"the ServerApp runner exited with code {code}"
        if reason:
            details += f": {reason}"
        try:
            failed = transition_run(
                run, RunStatus.FINISHED, RunStatus.FAILED, details, self._router.clock.time()
            )
        except RunNotRunningError:
            return
        self._state.update_run(failed)
        self._router.run_finished(failed)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the bundle is {size / 2**20:.1f} MiB, over this SuperLink's limit of "
        f"{limit / 2**20:g} MiB: leave data and weights out of it ([tool.stamen.app] "
        "exclude = [...] in its pyproject.toml) or start the SuperLink with a larger "
        "--max-bundle-size"
    )
