"""`stamen log` rides out a SuperLink restart with the shared Backoff, then gives up clearly."""

from __future__ import annotations

import pytest
from stamen.cli import control
from stamen.common.backoff import Backoff
from stamen.common.errors import UnavailableError
from stamen.common.run import Run, RunStatus
from stamen.transport.types import LogChunk


class FlakyLogs:
    """Fails `failures` times with UnavailableError, then serves one line of a finished run."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def get_logs(self, run_id: int, offset: int, timeout: float) -> LogChunk:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise UnavailableError("connection refused")
        run = Run(run_id=run_id, status=RunStatus.FINISHED, sub_status="completed")
        text = b"round 1\n" if offset == 0 else b""
        return LogChunk(text=text, next_offset=offset + len(text), run=run)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "LOG_BACKOFF", Backoff(initial=0.001, maximum=0.001))


async def test_log_retries_an_unreachable_superlink(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    client = FlakyLogs(failures=control.RETRIES)
    run = await control.print_logs(client, 3, follow=True)  # type: ignore[arg-type]
    assert run.sub_status == "completed"
    assert capsysbinary.readouterr().out == b"round 1\n"
    assert client.calls == control.RETRIES + 2


async def test_log_gives_up_after_its_retries_naming_the_cause() -> None:
    client = FlakyLogs(failures=10**6)
    with pytest.raises(UnavailableError, match=r"after 5 retries over \S+s: connection refused$"):
        await control.print_logs(client, 3, follow=True)  # type: ignore[arg-type]
    assert client.calls == control.RETRIES + 1
