"""Who may do what: node keys and signed Fleet requests, node and operator tokens, and
the SuperLink's per-API authorities. SECURITY.md holds the threat model."""

from .authority import (
    ANONYMOUS,
    AUTHORIZATION_HEADER,
    Authority,
    Caller,
    FleetAuthority,
    OperatorAuthority,
    RunnerAuthority,
    is_loopback,
)
from .keys import (
    PrivateKey,
    PublicKey,
    fingerprint,
    generate_key,
    load_private_key,
    load_public_keys,
    public_key_line,
    write_key_pair,
)
from .signing import NODE_TOKEN_HEADER, RequestSigner, SignatureVerifier
from .tokens import (
    LaunchTokens,
    NodeTokens,
    OperatorTokens,
    hash_token,
    load_or_create_secret,
    new_operator_token,
)

__all__ = [
    "ANONYMOUS",
    "AUTHORIZATION_HEADER",
    "NODE_TOKEN_HEADER",
    "Authority",
    "Caller",
    "FleetAuthority",
    "LaunchTokens",
    "NodeTokens",
    "OperatorAuthority",
    "OperatorTokens",
    "PrivateKey",
    "PublicKey",
    "RequestSigner",
    "RunnerAuthority",
    "SignatureVerifier",
    "fingerprint",
    "generate_key",
    "hash_token",
    "is_loopback",
    "load_or_create_secret",
    "load_private_key",
    "load_public_keys",
    "new_operator_token",
    "public_key_line",
    "write_key_pair",
]
