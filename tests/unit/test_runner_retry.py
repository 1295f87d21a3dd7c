"""RetryingServerAppIo: rides out transient SuperLink failures with backoff, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

import pytest
from stamen.codec.envelope import Envelope
from stamen.common.errors import (
    PermissionDeniedError,
    ResourceExhaustedError,
    RunNotFoundError,
    TransientError,
    UnavailableError,
)
from stamen.common.node import Node
from stamen.common.push import PushResult
from stamen.common.records import UserConfig
from stamen.common.run import Run
from stamen.runner.retry import RetryingServerAppIo
from stamen.transport.api import Chunk

OBJECT = bytes(range(256)) * 40  # 10,240 bytes


class FlakyServerAppIo:
    """Fails the first `failures` calls with UnavailableError (or `error`), then answers."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or UnavailableError("connection refused")
        self.calls: list[str] = []
        self.pushed: list[bytes] = []

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if self.failures > 0:
            self.failures -= 1
            raise self.error

    async def create_run(self, server_app: str, client_app: str, run_config: UserConfig) -> int:
        self._maybe_fail("create_run")
        return 4

    async def get_run(self, run_id: int) -> Run:
        self._maybe_fail("get_run")
        return Run(run_id=run_id)

    async def get_nodes(self, run_id: int) -> list[Node]:
        self._maybe_fail("get_nodes")
        return [Node(node_id=1)]

    async def push_messages(self, run_id: int, envelopes: Sequence[Envelope]) -> PushResult:
        self._maybe_fail("push_messages")
        return PushResult(message_ids=tuple(e.message_id for e in envelopes))

    async def pull_messages(
        self, run_id: int, message_ids: Sequence[str], timeout: float
    ) -> list[Envelope]:
        self._maybe_fail("pull_messages")
        return []

    async def push_object(
        self, run_id: int, object_id: str, total_size: int, chunks: AsyncIterable[Chunk]
    ) -> bool:
        received = b"".join([bytes(chunk) async for chunk in chunks])
        self.pushed.append(received)
        self._maybe_fail("push_object")
        return True

    async def pull_object(self, run_id: int, object_id: str) -> AsyncIterator[Chunk]:
        """Streams OBJECT in 1,000-byte chunks; a failing call breaks after the first 3."""
        self.calls.append("pull_object")
        for index, start in enumerate(range(0, len(OBJECT), 1000)):
            if index == 3 and self.failures > 0:
                self.failures -= 1
                raise self.error
            yield OBJECT[start : start + 1000]

    async def update_run_status(
        self, run_id: int, status: str, sub_status: str = "", details: str = ""
    ) -> None:
        self._maybe_fail("update_run_status")


def retrying(inner: FlakyServerAppIo, max_wait_time: float = 5.0) -> RetryingServerAppIo:
    return RetryingServerAppIo(
        inner, max_wait_time=max_wait_time, initial_delay=0.001, max_delay=0.01
    )


async def test_unavailable_calls_are_retried_until_they_succeed() -> None:
    inner = FlakyServerAppIo(failures=3)
    io = retrying(inner)

    run = await io.get_run(9)
    nodes = await io.get_nodes(9)

    assert run.run_id == 9
    assert nodes == [Node(node_id=1)]
    assert inner.calls == ["get_run"] * 4 + ["get_nodes"]


async def test_a_superlink_that_stays_away_ends_with_one_clear_error() -> None:
    inner = FlakyServerAppIo(failures=10**6)
    io = retrying(inner, max_wait_time=0.05)

    with pytest.raises(UnavailableError, match=r"gave up reaching the SuperLink .*: create_run: "):
        await io.create_run("server:app", "", {})
    assert len(inner.calls) > 2


@pytest.mark.parametrize(
    "error",
    [
        TransientError("internal error in ServerAppIo.PushMessages"),
        ResourceExhaustedError("SuperLink storage is full: (test)"),
    ],
)
async def test_internal_and_storage_errors_are_retried(error: Exception) -> None:
    inner = FlakyServerAppIo(failures=2, error=error)
    io = retrying(inner)

    assert (await io.push_messages(4, [])).message_ids == ()
    assert inner.calls == ["push_messages"] * 3


async def test_an_outage_is_logged_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="stamen.runner")
    inner = FlakyServerAppIo(failures=5)
    await retrying(inner).get_nodes(9)

    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("the SuperLink failed get_nodes: connection refused")
    assert messages[1].startswith("the SuperLink answers get_nodes again after")


@pytest.mark.parametrize("error", [RunNotFoundError(9), PermissionDeniedError("not allowed")])
async def test_other_errors_are_not_retried(error: Exception) -> None:
    inner = FlakyServerAppIo(failures=1, error=error)
    io = retrying(inner)

    with pytest.raises(type(error)):
        await io.update_run_status(9, "finished", "completed")
    assert inner.calls == ["update_run_status"]


class Reiterable:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), 4096):
            yield self.data[start : start + 4096]


async def test_push_object_resends_a_reiterable_stream() -> None:
    inner = FlakyServerAppIo(failures=1)
    io = retrying(inner)

    assert await io.push_object(1, "ab" * 32, len(OBJECT), Reiterable(OBJECT))
    assert inner.pushed == [OBJECT, OBJECT]


async def test_push_object_does_not_retry_a_one_shot_stream() -> None:
    inner = FlakyServerAppIo(failures=1)
    io = retrying(inner)

    with pytest.raises(UnavailableError):
        await io.push_object(1, "ab" * 32, len(OBJECT), Reiterable(OBJECT).__aiter__())
    assert len(inner.pushed) == 1


async def test_pull_object_resumes_where_a_broken_stream_stopped() -> None:
    inner = FlakyServerAppIo(failures=2)
    io = retrying(inner)

    chunks = [bytes(chunk) async for chunk in io.pull_object(1, "ab" * 32)]

    assert b"".join(chunks) == OBJECT
    assert inner.calls == ["pull_object"] * 3


async def test_other_calls_pass_through() -> None:
    inner = FlakyServerAppIo(failures=0)
    io = retrying(inner)

    assert await io.create_run("server:app", "client:app", {"a": 1}) == 4
    assert (await io.push_messages(4, [])).message_ids == ()
    assert await io.pull_messages(4, ["m"], 0.0) == []
    assert inner.calls == ["create_run", "push_messages", "pull_messages"]
