"""The seam between a SuperNode agent and whatever runs its ClientApp.

The agent hands an `AppExecutor` a message in wire form (envelope plus array objects,
keyed by content hash) and the node's Context; the executor returns the reply in wire
form plus the updated `Context.state`. In deployment the executor is the node's warm
worker process (or a thread); in simulation it is a handle on the shared worker pool,
which uses the object ids as keys for shared memory. Decoding and encoding happen in the
worker, off the agent's event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from stamen.codec.envelope import Envelope
from stamen.common.buffers import Buffer
from stamen.common.context import Context
from stamen.common.records import RecordDict

__all__ = ["AppExecutor", "AppResult", "AppTask", "Buffer"]


@dataclass(frozen=True, slots=True)
class AppTask:
    envelope: Envelope
    objects: Mapping[str, Buffer]
    context: Context


@dataclass(frozen=True, slots=True)
class AppResult:
    envelope: Envelope
    objects: Mapping[str, Buffer]
    state: RecordDict


class AppExecutor(Protocol):
    async def execute(self, task: AppTask) -> AppResult:
        """Run the ClientApp on one task. User errors come back as error replies;
        raising means the executor itself failed (and the agent replies with an error)."""
        ...

    async def aclose(self) -> None: ...
