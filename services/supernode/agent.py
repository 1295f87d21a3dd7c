"""SuperNodeAgent: the node's loop of pull -> run -> push against a FleetApi.

The agent registers, long-polls for instructions, fetches the objects it lacks (each
once: fetched objects are cached by id), runs the ClientApp through an `AppExecutor` and
pushes the reply with the objects the SuperLink still lacks. It is the same class in
deployment (over gRPC, with a worker process) and in simulation (over the memory
transport, with the shared pool), so it knows nothing of processes, signals or TLS.
Virtual nodes should share one `object_cache`: each agent's own cache keeps copies of
the models it fetched. A virtual node registered before its agent starts hands the agent
its `registration`.

Idle cost: the SuperLink counts a node waiting in a long poll as alive, so an idle agent
is a few coroutine frames in that poll: no heartbeat task, no task group, no events
(10,000 virtual nodes in one process). Heartbeats run only while an instruction is in hand, from
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

The decisions (answered ids, contexts, what follows a failed call, the stages of
stopping, a task's deadline) are `NodeCore`'s (`core.py`), which does no I/O; this class
does the I/O around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar, TypeVarTuple

from stamen.client.task import AppExecutor, AppTask
from stamen.codec.cache import ObjectCache
from stamen.codec.envelope import Envelope
from stamen.common.backoff import Backoff, Outage
from stamen.common.buffers import Buffer
from stamen.common.clock import SYSTEM_CLOCK, Clock
from stamen.common.context import Context
from stamen.common.errors import NodeNotFoundError, StamenError, TransientError, UnavailableError
from stamen.common.message import ErrorCode
from stamen.common.records import UserConfig
from stamen.common.run import Run
from stamen.transport.api import FleetApi
from stamen.transport.objects import fetch_object, push_missing
from stamen.transport.types import NodeRegistration

from .core import DEFAULT_GRACE_PERIOD, NodeCore, RegisterAgain, Stopping
from .replies import Reply, error_code, error_reply

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


class SuperNodeAgent:
    """One node: registers with the SuperLink and answers its instructions until stopped."""

    __slots__ = (
        "_beating",
        "_cache",
        "_clock",
        "_core",
        "_executor",
        "_fleet",
        "_pull_timeout",
        "_request_timeout",
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
        registration: NodeRegistration | None = None,
    ) -> None:
        self._core = NodeCore(
            node_config,
            backoff=backoff,
            max_retries=max_retries,
            max_wait_time=max_wait_time,
            rng=rng,
            grace_period=grace_period,
        )
        self._fleet = fleet
        self._executor = executor
        self._clock = clock
        self._pull_timeout = pull_timeout
        self._request_timeout = request_timeout
        self._cache = ObjectCache() if object_cache is None else object_cache
        self._wait_scope: asyncio.Timeout | None = None  # a long poll or a backoff pause
        self._task_scope: asyncio.Timeout | None = None  # the ClientApp's run
        self._beating: asyncio.Task[None] | None = None
        if registration is not None:  # made for it before it started (a virtual node)
            self._core.registered(registration.node_id, registration.heartbeat_interval)

    @property
    def node_id(self) -> int | None:
        """The id the SuperLink gave this node (None while not registered)."""
        return self._core.node_id

    def stop(self) -> None:
        """Begin a graceful shutdown: stop pulling, give the task in hand the grace
        period, unregister; `run()` then returns. Call it from the agent's event loop."""
        if self._core.stopping:
            return
        self._core.stop()
        now = asyncio.get_running_loop().time()
        wait, task = self._wait_scope, self._task_scope
        if wait is not None and not wait.expired():
            wait.reschedule(now)
        if task is not None and not task.expired():
            task.reschedule(self._core.grace_deadline(now, task.when()))

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until stopped; sets `ready` once registered. Raises UnavailableError when
        it gives up reaching the SuperLink. Cancelling it unregisters, then re-raises."""
        try:
            await self._call(self._nothing)  # registers, retrying while unreachable
        except Stopping:
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
        """Long-poll, answer what comes, repeat; registered again when need be (`_call`).

        An idle node is this frame and `_call`'s, waiting in the long poll, which stop()
        ends at once. The SuperLink counts a node in a long poll as alive, so heartbeats
        run only while an instruction is in hand.
        """
        while not self._core.stopping:
            try:
                envelopes = await self._call(self._poll)
                if envelopes:
                    await self._answer_all(envelopes)
            except Stopping:
                return

    async def _poll(self, node_id: int) -> list[Envelope]:
        """One long poll, bounded by its wait plus a request's time; stop() ends it."""
        bound = self._pull_timeout + self._request_timeout
        try:
            async with asyncio.timeout(bound) as scope:
                self._wait_scope = scope
                if self._core.stopping:
                    raise Stopping
                return await self._fleet.pull_messages(node_id, self._pull_timeout)
        except TimeoutError:
            if self._core.stopping:
                raise Stopping from None
            raise UnavailableError(
                f"the SuperLink did not answer PullMessages within {bound:g}s"
            ) from None
        finally:
            self._wait_scope = None

    async def _answer_all(self, envelopes: list[Envelope]) -> None:
        """Answer the instructions one by one, heartbeating from one interval on.

        A task shorter than the interval (all of them in a simulation) starts no
        heartbeat task at all: only a timer, cancelled when the answers are pushed.
        """
        loop = asyncio.get_running_loop()
        failure: StamenError | Stopping | None = None
        async with asyncio.TaskGroup() as tg:
            timer = loop.call_later(self._core.heartbeat_delay(), self._start_heartbeats, tg)
            try:
                for envelope in envelopes:
                    await self._answer(envelope)
            except (StamenError, Stopping) as exc:  # kept out of an ExceptionGroup
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
        if self._core.was_answered(meta.message_id):
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
                extra={"run_id": meta.run_id, "node_id": self._core.node_id},
            )
        if self._core.stopping:
            reason = f"node {self._core.node_id} is shutting down"
            reply = error_reply(meta, ErrorCode.NODE_UNAVAILABLE, reason, self._clock.time())
        else:
            reply = await self._serve_instruction(envelope)
        try:
            await self._call(self._push_reply, reply)
        except Stopping:
            logger.warning("stopping with the reply to message %s unsent", meta.message_id)
            raise
        except UnavailableError:
            raise  # gave up reconnecting
        except StamenError as exc:  # refused for good (run stopped, message expired, ...)
            logger.error("the SuperLink refused the reply to message %s: %s", meta.message_id, exc)
            self._core.answered(meta.message_id)
            return
        self._core.answered(meta.message_id)
        if verbose:
            logger.info(
                "replied to %s message %s in %.2fs",
                meta.message_type,
                meta.message_id,
                self._clock.now() - started,
                extra={"run_id": meta.run_id, "node_id": self._core.node_id},
            )

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
            reason = f"node {self._core.node_id}: {exc}"
            return error_reply(meta, ErrorCode.UNKNOWN, reason, self._clock.time())
        task = AppTask(envelope=envelope, objects=objects, context=context)
        loop = asyncio.get_running_loop()
        expires = self._core.task_started(meta, loop.time(), self._clock.time())
        try:
            # Ends at the instruction's expiry, when its run stops (`_check_run`), or a
            # grace period after stop(): the executor then interrupts or kills the task.
            async with asyncio.timeout_at(expires) as scope:
                self._task_scope = scope
                if self._core.stopping:
                    scope.reschedule(self._core.grace_deadline(loop.time(), expires))
                try:
                    result = await self._executor.execute(task)
                finally:
                    self._task_scope = None
                    self._core.task_ended()
        except TimeoutError:
            code, reason = self._core.task_cancelled(meta, expired=loop.time() >= expires)
            logger.warning("%s: message %s", reason, meta.message_id)
            return error_reply(meta, code, reason, self._clock.time())
        except StamenError as exc:
            logger.error("message %s: %s", meta.message_id, exc)
            reason = f"node {self._core.node_id}: {exc}"
            return error_reply(meta, error_code(exc), reason, self._clock.time())
        context.state = result.state
        return result.envelope, result.objects

    async def _fetch_objects(self, envelope: Envelope) -> dict[str, Buffer]:
        objects: dict[str, Buffer] = {}
        for object_id in envelope.object_ids:
            data = self._cache.get(object_id)
            if data is None:
                data = self._cache.put(object_id, await self._call(self._pull_object, object_id))
            objects[object_id] = data
        return objects

    async def _context(self, run_id: int, node_id: int) -> Context:
        """The run's Context: made on its first message (with the run's config), then
        kept so that `state` carries over from round to round."""
        context = self._core.context(run_id, node_id)
        if context is None:
            run = await self._call(self._get_run, run_id)
            context = self._core.run_fetched(run, node_id)
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
            self._fleet.register_node(self._core.node_config), "RegisterNode"
        )
        self._core.registered(registration.node_id, registration.heartbeat_interval)
        logger.info(
            "registered as node %d (heartbeat every %gs)",
            registration.node_id,
            registration.heartbeat_interval,
            extra={"node_id": registration.node_id},
        )
        return registration.node_id

    async def _unregister(self) -> None:
        node_id = self._core.unregistering()
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
        pull = partial(self._fleet.pull_object, node_id)
        return await fetch_object(pull, object_id, idle=self._request_timeout)

    async def _push_reply(self, node_id: int, reply: Reply) -> None:
        """Push the reply, then the objects the SuperLink does not have yet."""
        envelope, objects = reply
        result = await self._bounded(self._fleet.push_messages(node_id, [envelope]), "PushMessages")
        await push_missing(
            partial(self._fleet.push_object, node_id),
            result.missing_object_ids,
            objects,
            carrier=f"reply {envelope.message_id} does not carry",
            idle=self._request_timeout,
        )

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
        backoff while the SuperLink is unreachable and after a registration it forgot
        (as `NodeCore.call_failed` decides). Raises `Stopping` once stopped."""
        outage: Outage | None = None
        while True:
            node_id = self._core.node_id
            fresh = node_id is None
            try:
                if node_id is None:
                    node_id = await self._register()
                result = await operation(node_id, *args)
            except (TransientError, NodeNotFoundError) as exc:
                failure: StamenError = exc
            else:
                if outage is not None:
                    logger.info(
                        "reconnected to the SuperLink after %.1fs",
                        self._clock.now() - outage.started_at,
                    )
                return result
            retry = self._core.call_failed(failure, node_id, fresh, outage, self._clock.now())
            if isinstance(retry, RegisterAgain):
                logger.warning("the SuperLink no longer knows this node: %s", failure)
                continue
            outage = retry.outage
            if retry.began:
                lost = "waiting for" if self._core.node_id is None else "lost the connection to"
                logger.warning("%s the SuperLink: %s", lost, failure)
            logger.debug("retrying in %.1fs (retry %d)", retry.delay, retry.outage.retries)
            await self._pause(retry.delay)
            if self._core.stopping:
                raise Stopping

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if stop() is called meanwhile."""
        if self._core.stopping:
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
            node_id = self._core.node_id
            if node_id is not None:
                try:
                    self._core.heartbeat_interval = await self._bounded(
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
            await asyncio.sleep(self._core.heartbeat_delay())

    async def _check_run(self) -> None:
        """Cancel the task in hand when its run has stopped: nobody waits for its reply."""
        run_id, node_id, scope = self._core.task_run, self._core.node_id, self._task_scope
        if run_id is None or node_id is None or scope is None:
            return
        try:
            run = await self._bounded(self._fleet.get_run(node_id, run_id), "GetRun")
        except StamenError:
            return  # unknown now: the heartbeats say whether the link is lost
        if self._task_scope is scope and self._core.run_checked(run):
            scope.reschedule(asyncio.get_running_loop().time())
