"""ControlHandler: the Control API (what operators' tools call), over the router."""

from __future__ import annotations

from stamen.transport.types import Run, RunStatus

from .core import transition_run
from .router import Router

__all__ = ["ControlHandler"]


class ControlHandler:
    """Implements `stamen.transport.api.ControlApi`."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._state = router.state

    async def list_runs(self) -> list[Run]:
        return self._state.list_runs()

    async def get_run(self, run_id: int) -> Run:
        return self._state.get_run(run_id)

    async def stop_run(self, run_id: int) -> Run:
        """Finish the run as stopped; its open messages are dropped and its pulls return
        nothing. A run that is already finished: RunNotRunningError."""
        run = self._state.get_run(run_id)
        now = self._router.clock.time()
        stopped = transition_run(
            run, RunStatus.FINISHED, RunStatus.STOPPED, "stopped by an operator", now
        )
        self._state.update_run(stopped)
        self._router.run_finished(stopped)
        return stopped
