"""ClientApp: what a node runs on each message addressed to it.

Two styles, as in Flower. `ClientApp(client_fn=...)` builds a `Client` (or `NumPyClient`)
per message and speaks the legacy RecordDict conventions of `stamen.common.legacy`;
`ClientApp()` with `@app.train()`, `@app.evaluate()` and `@app.query()` hands messages to
functions `(message, context) -> Message`. Either way a call never raises for what user
code does: any exception becomes an error reply, so the hosting node keeps serving.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeAlias

from stamen.common.context import Context
from stamen.common.errors import ClientAppError
from stamen.common.legacy import (
    EvaluateRes,
    FitRes,
    GetParametersRes,
    GetPropertiesRes,
    MessageTypeLegacy,
    evaluateres_to_recorddict,
    fitres_to_recorddict,
    getparametersres_to_recorddict,
    getpropertiesres_to_recorddict,
    recorddict_to_evaluateins,
    recorddict_to_fitins,
    recorddict_to_getparametersins,
    recorddict_to_getpropertiesins,
)
from stamen.common.lifespan import LifespanFn, as_context_manager, no_lifespan
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import RecordDict

from .client import Client
from .numpy_client import NumPyClient

__all__ = [
    "ClientApp",
    "ClientAppCallable",
    "ClientFn",
    "LegacyClientFn",
    "Mod",
    "make_ffn",
]

logger = logging.getLogger(__name__)

ClientFn: TypeAlias = Callable[[Context], Client | NumPyClient]
LegacyClientFn: TypeAlias = Callable[[str], Client | NumPyClient]
ClientAppCallable: TypeAlias = Callable[[Message, Context], Message]
Mod: TypeAlias = Callable[[Message, Context, ClientAppCallable], Message]
"""Middleware: `mod(message, context, call_next)` may act before and after `call_next`."""

PARTITION_ID_KEY = "partition-id"
DEFAULT_ACTION = "default"
"""The action of a plain "train" message: `@app.train()` and `@app.train("default")`."""


class ClientApp:
    """A node's application: `ClientApp(client_fn=...)` or `ClientApp()` plus decorators.

    `client_fn(context)` returns a `Client` or `NumPyClient`; the older
    `client_fn(cid: str)` gets the node's partition id (else its node id) as text.
    `mods` wrap every call, the first one outermost.
    """

    def __init__(
        self,
        client_fn: ClientFn | LegacyClientFn | None = None,
        mods: Sequence[Mod] | None = None,
    ) -> None:
        self._client_fn = None if client_fn is None else _adapt_client_fn(client_fn)
        self._handlers: dict[str, ClientAppCallable] = {}
        self._call = make_ffn(self._dispatch, mods or ())
        self._lifespan: Callable[[Context], AbstractContextManager[None]] = no_lifespan

    def train(
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[Mod] | None = None
    ) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register a `(message, context) -> Message` function for "train" messages."""
        return self._register(MessageType.TRAIN, action, mods)

    def evaluate(
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[Mod] | None = None
    ) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register a `(message, context) -> Message` function for "evaluate" messages."""
        return self._register(MessageType.EVALUATE, action, mods)

    def query(
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[Mod] | None = None
    ) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register a function for "query" and "query.<anything>" messages."""
        return self._register(MessageType.QUERY, action, mods)

    def lifespan(self) -> Callable[[LifespanFn], LifespanFn]:
        """Decorator: `@app.lifespan()` over `def lifespan(context)` that yields once; the
        part before `yield` runs before each message is handled, the rest after it."""

        def register(fn: LifespanFn) -> LifespanFn:
            self._lifespan = as_context_manager(fn)
            return fn

        return register

    def __call__(self, message: Message, context: Context) -> Message:
        """The reply to `message`: the app's answer, or an error reply if user code failed."""
        try:
            with self._lifespan(context):
                reply = self._call(message, context)
            if not isinstance(reply, Message):
                raise ClientAppError(
                    f"a mod returned {type(reply).__name__}, not a Message; "
                    "a mod must return what call_next returns (or another reply)"
                )
        except (Exception, SystemExit) as exc:  # the node keeps serving; Ctrl-C still stops it
            return _error_reply(message, context, exc)
        return reply

    def _register(
        self, base: str, action: str, mods: Sequence[Mod] | None
    ) -> Callable[[ClientAppCallable], ClientAppCallable]:
        if callable(action):
            raise TypeError(f"write @app.{base}() with parentheses")
        if self._client_fn is not None:
            raise ValueError(
                f"this ClientApp was built with client_fn, so it cannot also take "
                f"@app.{base}() handlers: use one style or the other"
            )
        if action and action != DEFAULT_ACTION and not action.isidentifier():
            raise ValueError(f"@app.{base}({action!r}): the action must be a Python identifier")
        key = f"{base}.{action}" if action and action != DEFAULT_ACTION else base

        def decorator(fn: ClientAppCallable) -> ClientAppCallable:
            if inspect.iscoroutinefunction(fn):
                raise TypeError(f"@app.{base}() takes a plain function, not `async def {key}`")
            if key in self._handlers:
                raise ValueError(f"a handler for {key!r} messages is already registered")
            self._handlers[key] = make_ffn(_checked_handler(key, fn), mods or ())
            return fn

        return decorator

    def _dispatch(self, message: Message, context: Context) -> Message:
        message_type = message.metadata.message_type
        if self._client_fn is not None:
            return self._handle_legacy(message, context, self._client_fn)
        handler = self._handlers.get(message_type) or self._handlers.get(
            message_type.split(".", 1)[0]
        )
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise ClientAppError(
                f"this ClientApp has no handler for {message_type!r} messages (registered: {known})"
            )
        return handler(message, context)

    def _handle_legacy(
        self, message: Message, context: Context, client_fn: Callable[[Context], object]
    ) -> Message:
        message_type = message.metadata.message_type
        handle = _LEGACY_HANDLERS.get(message_type)
        if handle is None:
            raise ClientAppError(
                f"a ClientApp built with client_fn does not handle {message_type!r} "
                f"messages (it handles: {', '.join(_LEGACY_HANDLERS)})"
            )
        client = _build_client(client_fn, context)
        return message.create_reply(handle(client, message.content))


def _adapt_client_fn(client_fn: ClientFn | LegacyClientFn) -> Callable[[Context], object]:
    """`client_fn` as a function of the Context, whichever of the two styles it has."""
    if inspect.iscoroutinefunction(client_fn):
        raise TypeError("client_fn must be a plain function, not `async def`")
    try:
        signature = inspect.signature(client_fn)
    except (TypeError, ValueError):  # a builtin or C callable: assume the current style
        return client_fn  # type: ignore[return-value]
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"client_fn must take one argument (context: Context), but its signature is {signature}"
        ) from None
    params = list(signature.parameters.values())
    legacy = len(params) == 1 and (params[0].name == "cid" or params[0].annotation in (str, "str"))
    if not legacy:
        return client_fn  # type: ignore[return-value]
    legacy_fn: LegacyClientFn = client_fn  # type: ignore[assignment]
    return lambda context: legacy_fn(_legacy_cid(context))


def _legacy_cid(context: Context) -> str:
    """What an old `client_fn(cid)` gets: the partition id where set, else the node id."""
    if PARTITION_ID_KEY in context.node_config:
        return str(context.node_config[PARTITION_ID_KEY])
    return str(context.node_id)


def _build_client(client_fn: Callable[[Context], object], context: Context) -> Client:
    client = client_fn(context)
    if isinstance(client, NumPyClient):
        client = client.to_client()
    if not isinstance(client, Client):
        if isinstance(client, type):
            got = f"the class {client.__name__} itself (return an instance of it)"
        else:
            got = type(client).__name__
        raise ClientAppError(f"client_fn must return a Client or a NumPyClient, but returned {got}")
    client.set_context(context)
    return client


def _expect(value: Any, kind: type[Any], method: str) -> None:
    if not isinstance(value, kind):
        raise ClientAppError(
            f"Client.{method} must return {kind.__name__}, but returned {type(value).__name__}"
        )


def _fit(client: Client, content: RecordDict) -> RecordDict:
    res = client.fit(recorddict_to_fitins(content))
    _expect(res, FitRes, "fit")
    return fitres_to_recorddict(res)


def _evaluate(client: Client, content: RecordDict) -> RecordDict:
    res = client.evaluate(recorddict_to_evaluateins(content))
    _expect(res, EvaluateRes, "evaluate")
    return evaluateres_to_recorddict(res)


def _get_parameters(client: Client, content: RecordDict) -> RecordDict:
    res = client.get_parameters(recorddict_to_getparametersins(content))
    _expect(res, GetParametersRes, "get_parameters")
    return getparametersres_to_recorddict(res)


def _get_properties(client: Client, content: RecordDict) -> RecordDict:
    res = client.get_properties(recorddict_to_getpropertiesins(content))
    _expect(res, GetPropertiesRes, "get_properties")
    return getpropertiesres_to_recorddict(res)


_LEGACY_HANDLERS: dict[str, Callable[[Client, RecordDict], RecordDict]] = {
    MessageType.TRAIN: _fit,
    MessageType.EVALUATE: _evaluate,
    MessageTypeLegacy.GET_PARAMETERS: _get_parameters,
    MessageTypeLegacy.GET_PROPERTIES: _get_properties,
}


def _checked_handler(key: str, fn: ClientAppCallable) -> ClientAppCallable:
    """`fn`, failing clearly when it returns something other than a reply to its message."""

    name = getattr(fn, "__name__", repr(fn))

    def handler(message: Message, context: Context) -> Message:
        reply = fn(message, context)
        if not isinstance(reply, Message):
            raise ClientAppError(
                f"the {key!r} handler {name} returned {type(reply).__name__}, not a "
                "Message: return message.create_reply(content)"
            )
        if reply.metadata.reply_to_message_id != message.metadata.message_id:
            raise ClientAppError(
                f"the {key!r} handler {name} returned a Message that is not a reply to "
                "the one it got: build it with message.create_reply(content)"
            )
        return reply

    return handler


def make_ffn(ffn: ClientAppCallable, mods: Sequence[Mod]) -> ClientAppCallable:
    """`ffn` wrapped in `mods`, the first one outermost (Flower's name for it)."""
    for mod in reversed(mods):
        ffn = _bind_mod(mod, ffn)
    return ffn


def _bind_mod(mod: Mod, call_next: ClientAppCallable) -> ClientAppCallable:
    return lambda message, context: mod(message, context, call_next)


def _error_reply(message: Message, context: Context, exc: BaseException) -> Message:
    reason = _reason(exc)
    logger.error(
        "ClientApp failed on node %d (run %d, %s message %s): %s",
        context.node_id,
        context.run_id,
        message.metadata.message_type,
        message.metadata.message_id,
        reason,
        extra={"run_id": context.run_id, "node_id": context.node_id},
    )
    return message.create_error_reply(Error(code=ErrorCode.CLIENT_APP_RAISED, reason=reason))


def _reason(exc: BaseException) -> str:
    """One summary line, then (for user exceptions) the traceback from user code down."""
    summary = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ClientAppError):
        return summary
    frames = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    return f"{summary}\n{frames}"


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without its leading frames in this package (the dispatch machinery)."""
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("stamen.client."):
        tb = tb.tb_next
    return tb
