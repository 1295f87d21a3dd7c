"""Secrets that say who a caller is: node session tokens and operator bearer tokens.

Node tokens: `RegisterNode` returns one; every later Fleet request of that registration
carries it (metadata `stamen-node-token`), and the SuperLink takes the node's identity
from it, never from a `node_id` field the caller fills in. A token is
`<node id>.<epoch>.<mac>`: an HMAC under the SuperLink's secret of the node id and the
fingerprint of the key that registered it (empty without node authentication), so it
needs no storage and another key cannot use it. The epoch names the secret: a token from
a SuperLink whose secret (and with it, its state) is gone reads as "node not registered",
so the node registers again. The secret lives next to the SuperLink's database.

Operator tokens: random bearer tokens (`Authorization: Bearer ...`) for Control and
ServerAppIo. The SuperLink keeps only their SHA-256 in a file of `NAME:HEX` lines
(`python -m stamen.auth operator-token` adds one), so the file reveals no token.

Launch tokens: the bearer tokens the SuperLink makes for the runners it launches itself,
one per runner, held in memory (as hashes) only while that runner lives.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from stamen.common.errors import (
    ConfigError,
    NodeNotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

__all__ = [
    "NO_TOKEN",
    "LaunchTokens",
    "NodeTokens",
    "OperatorTokens",
    "hash_token",
    "load_or_create_secret",
    "new_operator_token",
]

NO_TOKEN = (
    "the request carries no node token (metadata stamen-node-token): register first and "
    "send the token RegisterNode returned"
)
"""The refusal of a Fleet call made as a node the caller did not register."""

_SECRET_BYTES = 32
_NODE_TOKEN = re.compile(r"([1-9][0-9]{0,18})\.([0-9a-f]{8})\.([0-9a-f]{32})")
_HASH_LINE = re.compile(r"([^\s:]+)\s*:\s*([0-9a-fA-F]{64})")


class NodeTokens:
    """Issues and checks the tokens that bind a registration to its node id (and key)."""

    __slots__ = ("_epoch", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a node token secret needs at least 16 bytes")
        self._secret = secret
        self._epoch = hashlib.sha256(b"stamen-epoch" + secret).hexdigest()[:8]

    def issue(self, node_id: int, key: str = "") -> str:
        return f"{node_id}.{self._epoch}.{self._mac(node_id, key)}"

    def check(self, token: str, key: str = "") -> int:
        """The node id `token` was issued for, to the key named `key`. UnauthenticatedError
        when there is no usable token, NodeNotFoundError when it comes from another
        SuperLink secret, PermissionDeniedError when it is forged or another key's."""
        if not token:
            raise UnauthenticatedError(NO_TOKEN)
        match = _NODE_TOKEN.fullmatch(token)
        if match is None:
            raise UnauthenticatedError("the request's node token is malformed")
        node_id = int(match[1])
        if match[2] != self._epoch:
            raise NodeNotFoundError(node_id)
        if not hmac.compare_digest(match[3], self._mac(node_id, key)):
            raise PermissionDeniedError(
                f"the node token is not valid for node {node_id}"
                + (" with this key" if key else "")
            )
        return node_id

    def _mac(self, node_id: int, key: str) -> str:
        message = f"{node_id}:{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]


def load_or_create_secret(path: Path | None) -> bytes:
    """The secret in `path`, made (mode 0600) when the file does not exist yet; a fresh
    one that is kept nowhere when `path` is None (a SuperLink whose state is not kept)."""
    if path is None:
        return secrets.token_bytes(_SECRET_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the node token secret {path}: {exc.strerror}") from None
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(_SECRET_BYTES) + "\n")
    try:
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the node token secret {path}: {exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"the node token secret {path} is too short: delete it to make a new one")
    return secret


def new_operator_token() -> str:
    """A fresh operator bearer token (256 random bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class OperatorTokens:
    """The operators the SuperLink admits, by the SHA-256 of their bearer token."""

    __slots__ = ("_names",)

    def __init__(self, hashes: dict[str, str]) -> None:
        self._names = {digest.lower(): name for digest, name in hashes.items()}

    @classmethod
    def load(cls, path: Path) -> OperatorTokens:
        """Read a file of `NAME:SHA256HEX` lines (blank lines and `#` comments skipped)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise ConfigError(f"cannot read the operator token file {path}: {reason}") from None
        hashes: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = _HASH_LINE.fullmatch(line)
            if match is None:
                raise ConfigError(
                    f"{path}, line {number}: expected NAME:SHA256HEX (the hash of a token, "
                    "as `python -m stamen.auth operator-token` writes it)"
                )
            hashes[match[2]] = match[1]
        if not hashes:
            raise ConfigError(f"the operator token file {path} lists no token")
        return cls(hashes)

    def check(self, authorization: str | None) -> str:
        """The name of the operator whose token `authorization` (`Bearer TOKEN`) carries."""
        if not authorization:
            raise UnauthenticatedError(
                "this API requires an operator token (authorization: Bearer TOKEN): pass "
                "--operator-token-file FILE or set STAMEN_OPERATOR_TOKEN"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("the authorization header is not 'Bearer TOKEN'")
        name = self._names.get(hash_token(token.strip()))
        if name is None:
            raise UnauthenticatedError(
                "the operator token is not on the SuperLink's list (unknown or revoked)"
            )
        return name


class LaunchTokens:
    """Bearer tokens the SuperLink issues to the processes it starts (ServerApp runners):
    each is good until revoked, and only its hash is kept."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def issue(self, name: str) -> str:
        """A fresh token for `name`, accepted until `revoke(token)`."""
        token = new_operator_token()
        self._names[hash_token(token)] = name
        return token

    def revoke(self, token: str) -> None:
        self._names.pop(hash_token(token), None)

    def name_of(self, authorization: str | None) -> str | None:
        """The name `authorization` (`Bearer TOKEN`) was issued to; None: not one of ours."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._names.get(hash_token(token.strip()))
