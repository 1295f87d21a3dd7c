"""TLS contexts for the SuperLink's servers and for the clients that connect to them.

The SuperLink takes `--certificates CA CERT KEY`: it serves CERT with KEY, and checks
that CA parses, because CA is what its clients pass as `--root-certificates`. A file that
cannot be read or parsed is a `ConfigError` that names it, raised before anything binds.
Both sides negotiate HTTP/2 through ALPN, as gRPC requires.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from stamen.common.errors import ConfigError

__all__ = ["client_context", "server_context"]

_ALPN = ["h2"]


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """The context the SuperLink serves with."""
    for path in (ca, cert, key):
        _check_readable(path)
    _check_certificates(ca)
    _check_certificates(cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"private key {key} does not belong to certificate {cert}") from exc
        raise ConfigError(
            f"private key {key} is not a valid unencrypted PEM key ({exc.reason or exc})"
        ) from exc
    context.set_alpn_protocols(_ALPN)
    return context


def client_context(root_certificates: Path | None) -> ssl.SSLContext:
    """A context that trusts `root_certificates` (or the system's roots when None)."""
    if root_certificates is not None:
        _check_readable(root_certificates)
        _check_certificates(root_certificates)
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=None if root_certificates is None else str(root_certificates),
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(_ALPN)
    return context


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read certificate file {path}: {exc.strerror or exc}") from exc


def _check_certificates(path: Path) -> None:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError(f"{path} is not a PEM certificate ({exc.reason or exc})") from exc


def _no_password() -> str:
    """Refuse encrypted keys at once instead of prompting on the terminal."""
    return ""
