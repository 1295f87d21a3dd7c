"""Signed Fleet requests: what a SuperNode adds to each call, and how the SuperLink checks it.

With node authentication on, every Fleet request carries, as gRPC metadata, the node's
public key, a wall-clock timestamp, a random nonce and a signature over
`method | timestamp | nonce | node token`. So a signature is good for one method, one
registration (the token binds the node id to the key, see `tokens`), a short window of
time, and once: the SuperLink remembers the nonces it saw within the window and refuses a
repeat. The request body is not signed: TLS protects it in transit, and a captured
signature cannot be replayed. Sans-IO: a `Clock` is injected, nothing here touches the
network.
"""

from __future__ import annotations

import base64
import binascii
import collections
import secrets
from collections.abc import Mapping

from stamen.common.clock import SYSTEM_CLOCK, Clock
from stamen.common.errors import UnauthenticatedError

from .keys import (
    PrivateKey,
    PublicKey,
    fingerprint,
    parse_public_key,
    public_key_line,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_WINDOW",
    "KEY_HEADER",
    "NODE_TOKEN_HEADER",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "RequestSigner",
    "SignatureVerifier",
]

NODE_TOKEN_HEADER = "stamen-node-token"
KEY_HEADER = "stamen-auth-key"
TIMESTAMP_HEADER = "stamen-auth-timestamp"
NONCE_HEADER = "stamen-auth-nonce"
SIGNATURE_HEADER = "stamen-auth-signature"

DEFAULT_WINDOW = 60.0
"""Seconds a signed request's timestamp may differ from the SuperLink's clock."""

_DOMAIN = "stamen-fleet-request-v1"
_MAX_NONCE = 64


def _payload(method: str, timestamp: str, nonce: str, token: str) -> bytes:
    return "\n".join((_DOMAIN, method, timestamp, nonce, token)).encode("utf-8")


class RequestSigner:
    """The SuperNode's side: the metadata that authenticates one request."""

    __slots__ = ("_clock", "_key", "_public")

    def __init__(self, key: PrivateKey, clock: Clock = SYSTEM_CLOCK) -> None:
        self._key = key
        self._public = public_key_line(key.public_key())
        self._clock = clock

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._key.public_key())

    def headers(self, method: str, token: str = "") -> dict[str, str]:
        timestamp = repr(self._clock.time())
        nonce = secrets.token_hex(16)
        signature = sign(self._key, _payload(method, timestamp, nonce, token))
        return {
            KEY_HEADER: self._public,
            TIMESTAMP_HEADER: timestamp,
            NONCE_HEADER: nonce,
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }


class SignatureVerifier:
    """The SuperLink's side: which allowed key signed a request, checked for time and replay.

    `keys` (by fingerprint) can be replaced at run time (`replace_keys`): a key taken off
    the list is refused from its next request on.
    """

    __slots__ = ("_allowed", "_clock", "_keys", "_seen", "_seen_order", "window")

    def __init__(
        self,
        keys: Mapping[str, PublicKey],
        *,
        window: float = DEFAULT_WINDOW,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.replace_keys(keys)
        self.window = window
        self._clock = clock
        self._seen: set[tuple[str, str]] = set()
        self._seen_order: collections.deque[tuple[float, tuple[str, str]]] = collections.deque()

    @property
    def keys(self) -> dict[str, PublicKey]:
        return dict(self._keys)

    def replace_keys(self, keys: Mapping[str, PublicKey]) -> None:
        self._keys = dict(keys)
        # By the exact line a signer sends, so that a request costs no key parsing.
        self._allowed = {public_key_line(key): (name, key) for name, key in keys.items()}

    def verify(self, method: str, metadata: Mapping[str, str]) -> str:
        """The fingerprint of the allowed key that signed this request; UnauthenticatedError
        with a one-line reason otherwise."""
        key_text = metadata.get(KEY_HEADER)
        timestamp = metadata.get(TIMESTAMP_HEADER)
        nonce = metadata.get(NONCE_HEADER)
        signature = metadata.get(SIGNATURE_HEADER)
        if not (key_text and timestamp and nonce and signature):
            raise UnauthenticatedError(
                "the SuperLink requires node authentication and this request is not signed: "
                "start the SuperNode with --auth-supernode-private-key"
            )
        allowed = self._allowed.get(key_text)
        if allowed is None:
            raise UnauthenticatedError(_refusal(key_text))
        name, key = allowed
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise UnauthenticatedError("the request's signature is not base64") from None
        token = metadata.get(NODE_TOKEN_HEADER, "")
        if len(nonce) > _MAX_NONCE or not verify(
            key, raw_signature, _payload(method, timestamp, nonce, token)
        ):
            raise UnauthenticatedError(f"the request's signature does not verify with key {name}")
        try:
            sent_at = float(timestamp)
        except ValueError:
            raise UnauthenticatedError(
                f"the request's timestamp {timestamp!r} is not a number"
            ) from None
        skew = sent_at - self._clock.time()
        if not abs(skew) <= self.window:
            raise UnauthenticatedError(
                f"the request's timestamp is {skew:+.0f}s off the SuperLink's clock (allowed "
                f"±{self.window:g}s): synchronize the clocks of SuperNode and SuperLink"
            )
        self._remember(name, nonce)
        return name

    def _remember(self, name: str, nonce: str) -> None:
        now = self._clock.now()
        seen, order = self._seen, self._seen_order
        while order and order[0][0] <= now:
            seen.discard(order.popleft()[1])
        entry = (name, nonce)
        if entry in seen:
            raise UnauthenticatedError("the request was seen before (a replay): refused")
        seen.add(entry)
        # A nonce must be remembered as long as its timestamp can pass: 2 windows.
        order.append((now + 2 * self.window, entry))


def _refusal(key_text: str) -> str:
    """Why a key that is not on the list is refused, naming it by its fingerprint."""
    try:
        name = fingerprint(parse_public_key(key_text))
    except ValueError as exc:
        return f"the request's node key is unusable: {exc}"
    return (
        f"node key {name} is not on the SuperLink's list of allowed keys "
        "(never added, or revoked): add its .pub line to --auth-list-public-keys"
    )
