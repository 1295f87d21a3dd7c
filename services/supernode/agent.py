"""SuperNodeAgent: the node's loop of pull -> run -> push against a FleetApi.

The agent registers, long-polls for instructions, fetches the objects it lacks (each
once: fetched objects are cached by id), runs the ClientApp through an `AppExecutor` and
pushes the reply with the objects the SuperLink still lacks. It is the same class in
deployment (over gRPC, with a worker process) and in simulation (over the memory
transport, with the shared pool), so it knows nothing of processes, signals or TLS.
Virtual nodes should share one `object_cache`: each agent's own cache keeps copies of
the models it fetched.

Idle cost: the SuperLink counts a node waiting in a long poll as alive, so an idle agent
is one coroutine frame in that poll: no heartbeat task, no task group, no events (10,000
virtual nodes in one process). Heartbeats run only while an instruction is in hand, from
one heartbeat interval after the poll returned until the reply is pushed, so they stay on
time however long the ClientApp trains.

Resilience: while the SuperLink is unreachable or fails transiently (`TransientError`:
`INTERNAL`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED` such as a full disk, a deadline), every
call is retried with exponential backoff (bounded by `max_retries` / `max_wait_time`,
unbounded by default), logged once when the outage begins and once when it ends, and a
reply that could not be pushed is pushed afterwards; a SuperLink that no longer knows the
node gets a fresh registration. Only what retrying cannot mend (a certificate or
credential refused) ends the node.

Stuck work ends: a task is cancelled when its instruction expires (created_at + TTL, which
the round loop sets to the round timeout) or its run stops (checked with each heartbeat),
answered with an error reply (`MESSAGE_EXPIRED` / `RUN_STOPPED`), and the node pulls again;
the executor interrupts the task's worker, or kills and replaces it.

`stop()` shuts down in stages: stop pulling, give the task in hand `grace_period` seconds
(then answer it with an error), unregister, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

from stamen.client.task import AppExecutor, AppTask, Buffer
from stamen.codec import collect_object
from stamen.codec.envelope import Envelope
from stamen.common.backoff import Backoff, Outage
from stamen.common.clock import SYSTEM_CLOCK, Clock
from stamen.common.context import Context
from stamen.common.errors import (
    InvalidMessageError,
    NodeNotFoundError,
    StamenError,
    TransientError,
    UnavailableError,
)
from stamen.common.message import ErrorCode
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.common.transfer import TransferProgress, tracked
from stamen.transport.api import FleetApi

from .cache import ObjectCache
from .replies import Reply, aiter_chunks, error_code, error_reply, extending

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_PULL_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "SuperNodeAgent",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_PULL_TIMEOUT = 30.0
"""Seconds one long poll waits for work before it is renewed."""

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds any other call (or one object chunk) may take before the link counts as lost."""

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


class _Stopping(Exception):
    """stop() interrupted a wait for the SuperLink; the serve loop ends."""


class SuperNodeAgent:
    """One node: registers with the SuperLink and answers its instructions until stopped."""

    __slots__ = (
        "_answered",
        "_backoff",
        "_beating",
        "_cache",
        "_cancelled",
        "_clock",
        "_contexts",
        "_executor",
        "_fleet",
        "_grace_period",
        "_heartbeat_interval",
        "_max_retries",
        "_max_wait_time",
        "_node_config",
        "_node_id",
        "_pull_timeout",
        "_request_timeout",
        "_rng",
        "_stopping",
        "_task_run",
        "_task_scope",
        "_wait_scope",
    )

    def __init__(
        self,
        fleet: FleetApi,
        executor: AppExecutor,
        node_config: UserConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_retries: int | None = None,
        max_wait_time: float | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        pull_timeout: float = DEFAULT_PULL_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        object_cache: ObjectCache | None = None,
    ) -> None:
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if max_wait_time is not None and max_wait_time < 0:
            raise ValueError(f"max_wait_time must not be negative, got {max_wait_time}")
        self._fleet = fleet
        self._executor = executor
        self._node_config = dict(node_config)
        self._clock = clock
        self._max_retries = max_retries
        self._max_wait_time = max_wait_time
        self._backoff = backoff or _DEFAULT_BACKOFF
        self._rng = rng
        self._pull_timeout = pull_timeout
        self._request_timeout = request_timeout
        self._grace_period = grace_period
        self._cache = ObjectCache() if object_cache is None else object_cache
        self._contexts: OrderedDict[int, Context] | None = None  # made by the first message
        # Instructions answered lately: a SuperLink restarted mid-delivery sends an
        # instruction again, and a node that already answered it must not run it twice.
        self._answered: OrderedDict[str, None] | None = None
        self._node_id: int | None = None
        self._heartbeat_interval = 0.0
        self._stopping = False
        self._wait_scope: asyncio.Timeout | None = None  # a long poll or a backoff pause
        self._task_scope: asyncio.Timeout | None = None  # the ClientApp's run
        self._task_run: int | None = None  # the run of the instruction in hand
        self._cancelled: tuple[int, str] | None = None  # why the task in hand was cancelled
        self._beating: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> int | None:
        """The id the SuperLink gave this node (None while not registered)."""
        return self._node_id

    def stop(self) -> None:
        """Begin a graceful shutdown: stop pulling, give the task in hand the grace
        period, unregister; `run()` then returns. Call it from the agent's event loop."""
        if self._stopping:
            return
        self._stopping = True
        now = asyncio.get_running_loop().time()
        wait, task = self._wait_scope, self._task_scope
        if wait is not None and not wait.expired():
            wait.reschedule(now)
        if task is not None and not task.expired():
            task.reschedule(_earlier(task.when(), now + self._grace_period))

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until stopped; sets `ready` once registered. Raises UnavailableError when
        it gives up reaching the SuperLink. Cancelling it unregisters, then re-raises."""
        try:
            await self._call(self._nothing)  # registers, retrying while unreachable
        except _Stopping:
            return
        if ready is not None:
            ready.set()
        try:
            await self._serve()
        except UnavailableError:
            raise  # gave up: there is no SuperLink to unregister from
        except BaseException:
            await self._unregister()
            raise
        await self._unregister()

    # The serve loop.

    async def _serve(self) -> None:
        """Long-poll, answer what comes, repeat; registered again when need be.

        An idle node is this one frame waiting in the long poll, which stop() ends at
        once. The poll is inlined, not a `_call`, to keep 10,000 idle virtual nodes
        small; `_recover` is `_call`'s own retry logic. The SuperLink counts a node in a
        long poll as alive, so heartbeats run only while an instruction is in hand.
        """
        outage: Outage | None = None
        bound = self._pull_timeout + self._request_timeout
        while not self._stopping:
            node_id = self._node_id
            fresh = node_id is None
            failure: StamenError | None = None
            try:
                if node_id is None:
                    node_id = await self._register()
                async with asyncio.timeout(bound) as scope:
                    self._wait_scope = scope
                    if self._stopping:
                        return
                    envelopes = await self._fleet.pull_messages(node_id, self._pull_timeout)
            except TimeoutError:
                if self._stopping:
                    return
                failure = UnavailableError(
                    f"the SuperLink did not answer PullMessages within {bound:g}s"
                )
            except (TransientError, NodeNotFoundError) as exc:
                failure = exc
            finally:
                self._wait_scope = None
            if failure is not None:
                try:
                    outage = await self._recover(failure, node_id, fresh, outage)
                except _Stopping:
                    return
                continue
            if outage is not None:
                self._reconnected(outage)
                outage = None
            if envelopes:
                try:
                    await self._answer_all(envelopes)
                except _Stopping:
                    return

    async def _answer_all(self, envelopes: list[Envelope]) -> None:
        """Answer the instructions one by one, heartbeating from one interval on.

        A task shorter than the interval (all of them in a simulation) starts no
        heartbeat task at all: only a timer, cancelled when the answers are pushed.
        """
        loop = asyncio.get_running_loop()
        failure: StamenError | _Stopping | None = None
        async with asyncio.TaskGroup() as tg:
            interval = max(self._heartbeat_interval, MIN_HEARTBEAT_INTERVAL)
            timer = loop.call_later(interval, self._start_heartbeats, tg)
            try:
                for envelope in envelopes:
                    await self._answer(envelope)
            except (StamenError, _Stopping) as exc:  # kept out of an ExceptionGroup
                failure = exc
            finally:
                timer.cancel()
                beating, self._beating = self._beating, None
                if beating is not None:
                    beating.cancel()
        if failure is not None:
            raise failure

    async def _answer(self, envelope: Envelope) -> None:
        meta = envelope.metadata
        if self._answered is not None and meta.message_id in self._answered:
            logger.info("message %s was answered already: skipped", meta.message_id)
            return
        verbose = logger.isEnabledFor(logging.INFO)
        if verbose:
            started = self._clock.now()
            logger.info(
                "received %s message %s for run %d",
                meta.message_type,
                meta.message_id,
                meta.run_id,
                extra={"run_id": meta.run_id, "node_id": self._node_id},
            )
        if self._stopping:
            reply = error_reply(
                meta, ErrorCode.NODE_UNAVAILABLE, f"node {self._node_id} is shutting down"
            )
        else:
            reply = await self._serve_instruction(envelope)
        try:
            await self._call(self._push_reply, reply)
        except _Stopping:
            logger.warning("stopping with the reply to message %s unsent", meta.message_id)
            raise
        except UnavailableError:
            raise  # gave up reconnecting
        except StamenError as exc:  # refused for good (run stopped, message expired, ...)
            logger.error("the SuperLink refused the reply to message %s: %s", meta.message_id, exc)
            self._remember_answered(meta.message_id)
            return
        self._remember_answered(meta.message_id)
        if verbose:
            logger.info(
                "replied to %s message %s in %.2fs",
                meta.message_type,
                meta.message_id,
                self._clock.now() - started,
                extra={"run_id": meta.run_id, "node_id": self._node_id},
            )

    def _remember_answered(self, message_id: str) -> None:
        if self._answered is None:
            self._answered = OrderedDict()
        self._answered[message_id] = None
        if len(self._answered) > MAX_ANSWERED:
            self._answered.popitem(last=False)

    async def _serve_instruction(self, envelope: Envelope) -> Reply:
        """The reply to one instruction: the app's, or an error saying why there is none."""
        meta = envelope.metadata
        try:
            objects = await self._fetch_objects(envelope)
            context = await self._context(meta.run_id, meta.dst_node_id)
        except UnavailableError:
            raise  # gave up reconnecting
        except StamenError as exc:  # the run or an object is gone, or failed its hash check
            logger.error("cannot serve message %s: %s", meta.message_id, exc)
            return error_reply(meta, ErrorCode.UNKNOWN, f"node {self._node_id}: {exc}")
        task = AppTask(envelope=envelope, objects=objects, context=context)
        loop = asyncio.get_running_loop()
        expires = loop.time() + meta.created_at + meta.ttl - self._clock.time() + EXPIRY_SLACK
        self._cancelled = None
        try:
            # Ends at the instruction's expiry, when its run stops (`_check_run`), or a
            # grace period after stop(): the executor then interrupts or kills the task.
            async with asyncio.timeout_at(expires) as scope:
                self._task_scope, self._task_run = scope, meta.run_id
                if self._stopping:
                    scope.reschedule(_earlier(expires, loop.time() + self._grace_period))
                try:
                    result = await self._executor.execute(task)
                finally:
                    self._task_scope = self._task_run = None
        except TimeoutError:
            code, reason = self._cancelled or (
                (ErrorCode.MESSAGE_EXPIRED, f"its message expired (TTL {meta.ttl:g}s)")
                if loop.time() >= expires
                else (
                    ErrorCode.NODE_UNAVAILABLE,
                    f"the node stopped (grace period {self._grace_period:g}s)",
                )
            )
            reason = f"node {self._node_id} cancelled the ClientApp's task: {reason}"
            logger.warning("%s: message %s", reason, meta.message_id)
            return error_reply(meta, code, reason)
        except StamenError as exc:
            logger.error("message %s: %s", meta.message_id, exc)
            return error_reply(meta, error_code(exc), f"node {self._node_id}: {exc}")
        context.state = result.state
        return result.envelope, result.objects

    async def _fetch_objects(self, envelope: Envelope) -> dict[str, Buffer]:
        objects: dict[str, Buffer] = {}
        for object_id in envelope.object_ids:
            data = self._cache.get(object_id)
            if data is None:
                data = await self._call(self._pull_object, object_id)
                self._cache.put(object_id, data)
            objects[object_id] = data
        return objects

    async def _context(self, run_id: int, node_id: int) -> Context:
        """The run's Context: made on its first message (with the run's config), then
        kept so that `state` carries over from round to round."""
        if self._contexts is None:
            self._contexts = OrderedDict()
        context = self._contexts.get(run_id)
        if context is None:
            run = await self._call(self._get_run, run_id)
            context = Context(
                run_id=run_id,
                node_id=node_id,
                node_config=dict(self._node_config),
                run_config=dict(run.run_config),
            )
            self._contexts[run_id] = context
            if len(self._contexts) > MAX_RUNS:
                self._contexts.popitem(last=False)
        self._contexts.move_to_end(run_id)
        context.node_id = node_id  # a node registered again has a new id
        return context

    async def get_run(self, run_id: int) -> Run:
        """The run, from the SuperLink (retried like every call of the agent)."""
        return await self._call(self._get_run, run_id)

    async def pull_object(self, object_id: str) -> Buffer:
        """An object from the SuperLink, checked against its id (retried)."""
        return await self._call(self._pull_object, object_id)

    # Calls to the SuperLink, each bounded in time.

    async def _nothing(self, node_id: int) -> None:
        """The call that only makes `_call` register."""

    async def _register(self) -> int:
        registration = await self._bounded(
            self._fleet.register_node(dict(self._node_config)), "RegisterNode"
        )
        self._node_id = registration.node_id
        self._heartbeat_interval = registration.heartbeat_interval
        logger.info(
            "registered as node %d (heartbeat every %gs)",
            registration.node_id,
            registration.heartbeat_interval,
            extra={"node_id": registration.node_id},
        )
        return registration.node_id

    async def _unregister(self) -> None:
        node_id, self._node_id = self._node_id, None
        if node_id is None:
            return
        try:
            await self._bounded(self._fleet.unregister_node(node_id), "UnregisterNode")
        except StamenError as exc:
            logger.warning("could not unregister node %d: %s", node_id, exc)
            return
        logger.info("unregistered node %d", node_id, extra={"node_id": node_id})

    async def _get_run(self, node_id: int, run_id: int) -> Run:
        return await self._bounded(self._fleet.get_run(node_id, run_id), "GetRun")

    async def _pull_object(self, node_id: int, object_id: str) -> Buffer:
        """Fetch one object, verified against its id; each chunk must come in time."""
        idle = self._request_timeout
        try:
            async with asyncio.timeout(idle) as scope:
                stream = extending(self._fleet.pull_object(node_id, object_id), scope, idle)
                what = f"object {object_id[:12]} from the SuperLink"
                progress = TransferProgress(("downloading", "downloaded"), what, None, logger)
                async with contextlib.aclosing(tracked(stream, progress)) as counted:
                    return await collect_object(object_id, counted)
        except TimeoutError:
            raise UnavailableError(
                f"the SuperLink sent no part of object {object_id} for {idle:g}s"
            ) from None

    async def _push_reply(self, node_id: int, reply: Reply) -> None:
        """Push the reply, then the objects the SuperLink does not have yet."""
        envelope, objects = reply
        result = await self._bounded(self._fleet.push_messages(node_id, [envelope]), "PushMessages")
        for object_id in result.missing_object_ids:
            data = objects.get(object_id)
            if data is None:
                raise InvalidMessageError(
                    f"the SuperLink asked for object {object_id}, which reply "
                    f"{envelope.message_id} does not carry"
                )
            idle = self._request_timeout
            try:
                async with asyncio.timeout(idle) as scope:
                    chunks = extending(aiter_chunks(data), scope, idle)
                    async with contextlib.aclosing(chunks):
                        await self._fleet.push_object(
                            node_id, object_id, memoryview(data).nbytes, chunks
                        )
            except TimeoutError:
                raise UnavailableError(
                    f"the SuperLink took more than {idle:g}s over a part of object {object_id}"
                ) from None

    async def _bounded(self, call: Awaitable[T], name: str) -> T:
        try:
            async with asyncio.timeout(self._request_timeout):
                return await call
        except TimeoutError:
            raise UnavailableError(
                f"the SuperLink did not answer {name} within {self._request_timeout:g}s"
            ) from None

    async def _call(self, operation: Callable[[int, *Ts], Awaitable[T]], *args: *Ts) -> T:
        """`operation(node_id, *args)`, registering first when needed, retried with
        backoff while the SuperLink is unreachable and after a registration it forgot."""
        outage: Outage | None = None
        while True:
            node_id = self._node_id
            fresh = node_id is None
            try:
                if node_id is None:
                    node_id = await self._register()
                result = await operation(node_id, *args)
            except (TransientError, NodeNotFoundError) as exc:
                failure: StamenError = exc
            else:
                if outage is not None:
                    self._reconnected(outage)
                return result
            outage = await self._recover(failure, node_id, fresh, outage)

    async def _recover(
        self, failure: StamenError, node_id: int | None, fresh: bool, outage: Outage | None
    ) -> Outage | None:
        """After a call as `node_id` failed: forget a registration the SuperLink lost
        (`fresh`: made for this very call), wait out the backoff, and return the outage
        for the next try. Raises `_Stopping` once stopped, UnavailableError on giving
        up, and `failure` itself when another node's id is unknown."""
        if isinstance(failure, NodeNotFoundError):
            if node_id is None or failure.node_id != node_id:
                raise failure
            self._node_id = None
            if not fresh:
                logger.warning("the SuperLink no longer knows this node: %s", failure)
                return outage  # register again, at once
        if self._stopping:
            raise _Stopping
        now = self._clock.now()
        if outage is None:
            lost = "waiting for" if self._node_id is None else "lost the connection to"
            logger.warning("%s the SuperLink: %s", lost, failure)
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
        logger.debug("retrying in %.1fs (retry %d)", delay, outage.retries)
        await self._pause(delay)
        if self._stopping:
            raise _Stopping
        return outage

    def _reconnected(self, outage: Outage) -> None:
        logger.info(
            "reconnected to the SuperLink after %.1fs", self._clock.now() - outage.started_at
        )

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if stop() is called meanwhile."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds) as scope:
                self._wait_scope = scope
                try:
                    await asyncio.get_running_loop().create_future()  # only the scope ends it
                finally:
                    self._wait_scope = None

    # Heartbeats, while an instruction is in hand.

    def _start_heartbeats(self, tg: asyncio.TaskGroup) -> None:
        """The instruction took one heartbeat interval so far: beat until it is answered."""
        self._beating = tg.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Send a heartbeat now and then every interval the SuperLink asks for.

        Failures are only noted here: the serve loop reconnects and registers again.
        """
        healthy = True
        while True:
            node_id = self._node_id
            if node_id is not None:
                try:
                    self._heartbeat_interval = await self._bounded(
                        self._fleet.heartbeat(node_id), "Heartbeat"
                    )
                except StamenError as exc:
                    if healthy:
                        logger.warning("heartbeat of node %d failed: %s", node_id, exc)
                    healthy = False
                else:
                    if not healthy:
                        logger.info("heartbeats of node %d go through again", node_id)
                    healthy = True
            await self._check_run()
            await asyncio.sleep(max(self._heartbeat_interval, MIN_HEARTBEAT_INTERVAL))

    async def _check_run(self) -> None:
        """Cancel the task in hand when its run has stopped: nobody waits for its reply."""
        run_id, node_id, scope = self._task_run, self._node_id, self._task_scope
        if run_id is None or node_id is None or scope is None:
            return
        try:
            run = await self._bounded(self._fleet.get_run(node_id, run_id), "GetRun")
        except StamenError:
            return  # unknown now: the heartbeats say whether the link is lost
        if run.status == RunStatus.FINISHED and self._task_scope is scope:
            self._cancelled = (ErrorCode.RUN_STOPPED, f"run {run_id} is {run.sub_status}")
            scope.reschedule(asyncio.get_running_loop().time())


def _earlier(when: float | None, other: float) -> float:
    return other if when is None else min(when, other)
