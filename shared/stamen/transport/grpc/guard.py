"""Authentication at the gRPC edge, on both sides of a channel.

Server: `guard(mapping, authority, service)` wraps each method of a servicer so that the
`Authority` judges the request's metadata and peer before the method runs; the `Caller`
it returns is what `current_caller()` gives the servicer while that request is handled.
Refusals travel through the one error table (UNAUTHENTICATED, PERMISSION_DENIED, ...).
The wrapper also reads requests defensively: headers over `MAX_HEADER_LIST_SIZE` are
RESOURCE_EXHAUSTED, and a compressed or truncated frame is INVALID_ARGUMENT, not an
application error with a traceback.

Client: `sign_requests(channel, signer)` signs every request on a channel with a node
key; `use_operator_token(channel, token)` sends an operator's bearer token. Both hook
the channel's SendRequest event, so any stub or client on that channel carries them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast

from grpclib.client import Channel
from grpclib.const import Handler
from grpclib.events import SendRequest, listen
from grpclib.server import Stream

from stamen.auth.authority import ANONYMOUS, AUTHORIZATION_HEADER, Authority, Caller
from stamen.auth.signing import NODE_TOKEN_HEADER, RequestSigner
from stamen.common.errors import ConfigError, InvalidMessageError, RequestTooLargeError

from .errors import as_grpc, grpc_errors

__all__ = [
    "MAX_HEADER_LIST_SIZE",
    "OPERATOR_TOKEN_ENV",
    "current_caller",
    "guard",
    "operator_token",
    "read_operator_token",
    "sign_requests",
    "use_operator_token",
]

logger = logging.getLogger(__name__)

MAX_HEADER_LIST_SIZE = 64 << 10
"""Bytes of metadata (names and values) a request may carry: HTTP/2's usual 64 KiB."""

OPERATOR_TOKEN_ENV = "STAMEN_OPERATOR_TOKEN"
"""The environment variable that may hold an operator token (instead of a token file)."""

_CALLER: ContextVar[Caller] = ContextVar("stamen_caller", default=ANONYMOUS)

_MethodFunc = Callable[[Stream[Any, Any]], Awaitable[None]]


def current_caller() -> Caller:
    """Who the request being handled comes from (ANONYMOUS outside a guarded call)."""
    return _CALLER.get()


def guard(
    mapping: dict[str, Handler], authority: Authority | None, service: str
) -> dict[str, Handler]:
    """`mapping` with each method first authenticated by `authority` (when given) and its
    request frames read defensively."""
    return {
        name: Handler(
            _guarded(name, handler.func, authority, service),
            handler.cardinality,
            handler.request_type,
            handler.reply_type,
        )
        for name, handler in mapping.items()
    }


def _guarded(
    name: str, func: _MethodFunc, authority: Authority | None, service: str
) -> _MethodFunc:
    method = f"{service}.{name.rsplit('/', 1)[-1]}"

    async def call(stream: Stream[Any, Any]) -> None:
        caller = ANONYMOUS
        metadata = cast(Mapping[str, str], stream.metadata or {})
        with grpc_errors(method):
            size = sum(len(key) + len(value) for key, value in metadata.items())
            if size > MAX_HEADER_LIST_SIZE:
                raise RequestTooLargeError(
                    f"{method}: request headers of {size} bytes exceed the limit of "
                    f"{MAX_HEADER_LIST_SIZE} bytes"
                )
            if authority is not None:
                caller = authority.authenticate(name, metadata, stream.peer.addr())
        _CALLER.set(caller)  # each request is its own task: nothing to reset
        _read_defensively(stream, method)
        await func(stream)

    return call


def _read_defensively(stream: Stream[Any, Any], method: str) -> None:
    """grpclib raises NotImplementedError for a compressed frame and AssertionError for a
    truncated one, which it logs as application errors (status UNKNOWN): say what they are."""
    receive = stream.recv_message

    async def recv_message() -> Any:
        try:
            return await receive()
        except NotImplementedError:
            error = InvalidMessageError(f"{method}: compressed messages are not accepted")
        except AssertionError:
            error = InvalidMessageError(f"{method}: the request frame is truncated")
        raise as_grpc(error)

    stream.recv_message = recv_message  # type: ignore[method-assign]


# --- the client side -------------------------------------------------------------------


def sign_requests(channel: Channel, signer: RequestSigner) -> None:
    """Sign every request sent on `channel` with the node key of `signer`."""

    async def on_send(event: SendRequest) -> None:
        token = event.metadata.get(NODE_TOKEN_HEADER, "")
        for header, value in signer.headers(event.method_name, str(token)).items():
            event.metadata[header] = value

    listen(channel, SendRequest, on_send)


def use_operator_token(channel: Channel, token: str) -> None:
    """Send the operator bearer `token` with every request on `channel`."""
    value = f"Bearer {token}"

    async def on_send(event: SendRequest) -> None:
        event.metadata[AUTHORIZATION_HEADER] = value

    listen(channel, SendRequest, on_send)


def read_operator_token(path: Path) -> str:
    """The operator token in `path` (its first non-blank line); ConfigError saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        raise ConfigError(f"cannot read the operator token file {path}: {reason}") from None
    return _checked_token(text, str(path))


def operator_token(path: Path | None) -> str | None:
    """The operator token of a client: from `path` (a token file flag) when given, else
    from $STAMEN_OPERATOR_TOKEN, else None. ConfigError saying why one is unusable."""
    if path is not None:
        return read_operator_token(path)
    text = os.environ.get(OPERATOR_TOKEN_ENV, "")
    return _checked_token(text, f"${OPERATOR_TOKEN_ENV}") if text.strip() else None


def _checked_token(text: str, where: str) -> str:
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token or any(ch.isspace() for ch in token):
        raise ConfigError(f"{where} holds no operator token (one line, no spaces)")
    return token
