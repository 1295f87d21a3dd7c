"""Who may call an API: the SuperLink's decision for each request, before its handler runs.

An `Authority` looks at a request's method, metadata and peer and returns the `Caller`
it comes from, or raises (UnauthenticatedError: no or bad credentials;
PermissionDeniedError: credentials of someone else). The gRPC servicers ask it first
(`stamen.transport.grpc.guard`) and hand the Caller to the handler call.

- `FleetAuthority`: a node is who its registration's token says (and, with node
  authentication on, the allowed key that signs each request); RegisterNode is open
  unless node authentication is on.
- `OperatorAuthority` (Control and ServerAppIo): a bearer token from the hashed list when
  one is configured; without one, anyone who reaches the API (which is why the SuperLink
  binds those APIs to 127.0.0.1 by default, and warns when told to bind them wider).
- `RunnerAuthority` (ServerAppIo): the operators, and the runners the SuperLink launched
  itself, each with the launch token it was given; those tokens open nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .signing import NODE_TOKEN_HEADER, SignatureVerifier
from .tokens import LaunchTokens, NodeTokens, OperatorTokens

__all__ = [
    "ANONYMOUS",
    "AUTHORIZATION_HEADER",
    "Authority",
    "Caller",
    "FleetAuthority",
    "OperatorAuthority",
    "RunnerAuthority",
    "is_loopback",
]

AUTHORIZATION_HEADER = "authorization"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from, as an Authority established it."""

    node_id: int | None = None
    """The node (Fleet requests after RegisterNode)."""
    key: str = ""
    """The fingerprint of the node's key ("" without node authentication)."""
    operator: str = ""
    """The operator's name from the token list ("" when none is configured)."""


ANONYMOUS = Caller()


class Authority(Protocol):
    def authenticate(
        self, method: str, metadata: Mapping[str, str], peer: tuple[str, int] | None
    ) -> Caller: ...


class FleetAuthority:
    """Fleet: node identity from the registration token, and the signing key when on."""

    __slots__ = ("tokens", "verifier")

    def __init__(self, tokens: NodeTokens, verifier: SignatureVerifier | None = None) -> None:
        self.tokens = tokens
        self.verifier = verifier

    def authenticate(
        self, method: str, metadata: Mapping[str, str], peer: tuple[str, int] | None
    ) -> Caller:
        key = "" if self.verifier is None else self.verifier.verify(method, metadata)
        if method.endswith("/RegisterNode"):
            return Caller(key=key)
        node_id = self.tokens.check(metadata.get(NODE_TOKEN_HEADER, ""), key)
        return Caller(node_id=node_id, key=key)

    def issue(self, caller: Caller, node_id: int) -> str:
        """The token for a registration `caller` just made."""
        return self.tokens.issue(node_id, caller.key)


class OperatorAuthority:
    """Control and ServerAppIo: operators by bearer token (no tokens: open)."""

    __slots__ = ("tokens",)

    def __init__(self, tokens: OperatorTokens | None = None) -> None:
        self.tokens = tokens

    def authenticate(
        self, method: str, metadata: Mapping[str, str], peer: tuple[str, int] | None
    ) -> Caller:
        if self.tokens is None:
            return ANONYMOUS
        return Caller(operator=self.tokens.check(metadata.get(AUTHORIZATION_HEADER)))


class RunnerAuthority:
    """ServerAppIo: an operator, or a runner holding one of the SuperLink's launch tokens."""

    __slots__ = ("launched", "operators")

    def __init__(self, operators: OperatorAuthority, launched: LaunchTokens) -> None:
        self.operators = operators
        self.launched = launched

    def authenticate(
        self, method: str, metadata: Mapping[str, str], peer: tuple[str, int] | None
    ) -> Caller:
        name = self.launched.name_of(metadata.get(AUTHORIZATION_HEADER))
        if name is not None:
            return Caller(operator=name)
        return self.operators.authenticate(method, metadata, peer)


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
