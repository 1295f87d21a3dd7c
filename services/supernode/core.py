"""NodeCore: the SuperNode's decisions, without I/O.

The agent (`agent.py`) does the I/O: it calls the SuperLink, waits, runs the ClientApp's
task. It tells this core what happened (registered, answered, a call failed, stop was
asked, a run stopped) with `now`, and the core decides what follows. Tests drive it with
plain values and a fake time, no event loop (like the SuperLink's `core.py`).

What it decides:
- which instructions were answered already, so one delivered again (by a SuperLink
  restarted mid-delivery) is not run twice: the last `MAX_ANSWERED` ids;
- each run's `Context`, kept so that `state` carries over from round to round: the
  last `MAX_RUNS` runs served;
- after a failed call: register again at once (the SuperLink no longer knows the node),
  or wait out the backoff and retry (it is unreachable or failing transiently), or give
  up (`UnavailableError`), or end because the node is stopping (`Stopping`);
- shutdown in stages and a task's end: stop pulling; the task in hand ends at its
  instruction's expiry, when its run stops, or `grace_period` after stop(); and which
  error answers a task so ended.

Idle cost: nothing here is allocated until it is needed (the LRUs at the first message,
the random generator at the first outage), so 10,000 idle virtual nodes stay small.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stamen.common.backoff import Backoff, Outage
from stamen.common.context import Context
from stamen.common.errors import NodeNotFoundError, StamenError, UnavailableError
from stamen.common.lru import Lru
from stamen.common.message import ErrorCode, Metadata
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "EXPIRY_SLACK",
    "MAX_ANSWERED",
    "MAX_RUNS",
    "MIN_HEARTBEAT_INTERVAL",
    "NodeCore",
    "RegisterAgain",
    "Retry",
    "Stopping",
]

DEFAULT_GRACE_PERIOD = 8.0
"""Seconds a stopping node gives the task in hand: under `docker stop`'s 10 s, leaving
time to reply and unregister."""

MIN_HEARTBEAT_INTERVAL = 0.05
"""A floor under the SuperLink's heartbeat interval, so a zero cannot spin the loop."""

MAX_RUNS = 64
"""Runs whose Context (and state) a node keeps; the least recently served is dropped."""

MAX_ANSWERED = 256
"""How many answered instruction ids a node remembers, to skip one delivered again."""

EXPIRY_SLACK = 1.0
"""Seconds a task may run past its instruction's expiry (created_at + TTL, the sender's
wall clock) before the node cancels it: room for clocks a little apart."""

_DEFAULT_BACKOFF = Backoff()


class Stopping(Exception):
    """stop() was asked while the node waited for the SuperLink: the serve loop ends."""


@dataclass(frozen=True, slots=True)
class RegisterAgain:
    """After a failed call: the SuperLink no longer knows the node; register at once."""


@dataclass(frozen=True, slots=True)
class Retry:
    """After a failed call: wait `delay` seconds, then try again within `outage`."""

    delay: float
    outage: Outage
    began: bool
    """This failure began the outage (log it once)."""


class NodeCore:
    """One node's protocol state: registration, answered ids, contexts, stopping."""

    __slots__ = (
        "_answered",
        "_backoff",
        "_cancelled",
        "_contexts",
        "_max_retries",
        "_max_wait_time",
        "_node_config",
        "_rng",
        "grace_period",
        "heartbeat_interval",
        "node_id",
        "stopping",
        "task_run",
    )

    def __init__(
        self,
        node_config: UserConfig,
        *,
        backoff: Backoff | None = None,
        max_retries: int | None = None,
        max_wait_time: float | None = None,
        rng: random.Random | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
    ) -> None:
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if max_wait_time is not None and max_wait_time < 0:
            raise ValueError(f"max_wait_time must not be negative, got {max_wait_time}")
        self._node_config = dict(node_config)
        self._backoff = backoff or _DEFAULT_BACKOFF
        self._max_retries = max_retries
        self._max_wait_time = max_wait_time
        self._rng = rng
        self.grace_period = grace_period
        self.node_id: int | None = None
        self.heartbeat_interval = 0.0
        self.stopping = False
        self.task_run: int | None = None
        """The run of the instruction in hand (None between tasks)."""
        self._cancelled: tuple[int, str] | None = None
        self._contexts: Lru[int, Context] | None = None
        self._answered: Lru[str, bool] | None = None

    @property
    def node_config(self) -> UserConfig:
        return dict(self._node_config)

    # Registration.

    def registered(self, node_id: int, heartbeat_interval: float) -> None:
        self.node_id = node_id
        self.heartbeat_interval = heartbeat_interval

    def unregistering(self) -> int | None:
        """The node id to unregister (None: not registered); the node then has none."""
        node_id, self.node_id = self.node_id, None
        return node_id

    def heartbeat_delay(self) -> float:
        """Seconds until the next heartbeat (and before the first one)."""
        return max(self.heartbeat_interval, MIN_HEARTBEAT_INTERVAL)

    # Instructions answered, and the runs' contexts.

    def was_answered(self, message_id: str) -> bool:
        return self._answered is not None and message_id in self._answered

    def answered(self, message_id: str) -> None:
        if self._answered is None:
            self._answered = Lru(MAX_ANSWERED)
        self._answered.put(message_id, True)

    def context(self, run_id: int, node_id: int) -> Context | None:
        """The run's Context if the node keeps it (marked as just used), as `node_id`:
        a node registered again has a new id."""
        if self._contexts is None:
            return None
        context = self._contexts.get(run_id)
        if context is not None:
            context.node_id = node_id
        return context

    def run_fetched(self, run: Run, node_id: int) -> Context:
        """The new Context of a run met for the first time (with the run's config)."""
        if self._contexts is None:
            self._contexts = Lru(MAX_RUNS)
        context = Context(
            run_id=run.run_id,
            node_id=node_id,
            node_config=dict(self._node_config),
            run_config=dict(run.run_config),
        )
        self._contexts.put(run.run_id, context)
        return context

    # Failed calls.

    def call_failed(
        self,
        failure: StamenError,
        node_id: int | None,
        fresh: bool,
        outage: Outage | None,
        now: float,
    ) -> Retry | RegisterAgain:
        """What to do after a call made as `node_id` failed with `failure` (`fresh`: the
        registration was made for this very call; `outage`: the one this call is in).

        Raises `failure` itself when it names another node, `Stopping` once stopping,
        and UnavailableError when the outage has used up its retries or time.
        """
        if isinstance(failure, NodeNotFoundError):
            if node_id is None or failure.node_id != node_id:
                raise failure
            self.node_id = None
            if not fresh:
                return RegisterAgain()
        if self.stopping:
            raise Stopping
        began = outage is None
        if outage is None:
            outage = Outage(
                self._backoff,
                started_at=now,
                max_retries=self._max_retries,
                max_wait_time=self._max_wait_time,
                rng=self._rng or random.Random(),
            )
        try:
            delay = outage.next_delay(now, str(failure))
        except UnavailableError as exc:
            raise exc from failure
        return Retry(delay, outage, began=began)

    # Stopping, and the task in hand.

    def stop(self) -> None:
        """stop() was asked: the node stops pulling (see `grace_deadline` for the task)."""
        self.stopping = True

    def grace_deadline(self, now: float, deadline: float | None) -> float:
        """The deadline of the task in hand once the node stops at `now`: its own
        (`deadline`; None: none) or a grace period from now, whichever comes first."""
        grace = now + self.grace_period
        return grace if deadline is None else min(deadline, grace)

    def task_started(self, instruction: Metadata, now: float, wall_now: float) -> float:
        """A task for `instruction` starts at `now` (the deadlines' clock; `wall_now`:
        unix seconds). Returns when it expires: the instruction's expiry plus some
        slack (a stopping node ends it sooner: `grace_deadline`)."""
        self.task_run = instruction.run_id
        self._cancelled = None
        return now + instruction.created_at + instruction.ttl - wall_now + EXPIRY_SLACK

    def task_ended(self) -> None:
        self.task_run = None

    def run_checked(self, run: Run) -> bool:
        """A heartbeat looked at the task's run: True when the task must be cancelled
        (the run stopped, so nobody waits for its reply)."""
        if run.status != RunStatus.FINISHED or run.run_id != self.task_run:
            return False
        self._cancelled = (ErrorCode.RUN_STOPPED, f"run {run.run_id} is {run.sub_status}")
        return True

    def task_cancelled(self, instruction: Metadata, expired: bool) -> tuple[int, str]:
        """The error code and reason that answer a task ended before its reply
        (`expired`: its deadline passed, rather than stop()'s grace period)."""
        code, reason = self._cancelled or (
            (ErrorCode.MESSAGE_EXPIRED, f"its message expired (TTL {instruction.ttl:g}s)")
            if expired
            else (
                ErrorCode.NODE_UNAVAILABLE,
                f"the node stopped (grace period {self.grace_period:g}s)",
            )
        )
        return code, f"node {self.node_id} cancelled the ClientApp's task: {reason}"
