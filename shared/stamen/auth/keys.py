"""Node key pairs: make, save, load, sign with and verify by (via `cryptography`).

A SuperNode holds a private key (`--auth-supernode-private-key`); the SuperLink holds the
list of public keys it admits (`--auth-list-public-keys`). Two kinds are accepted:
Ed25519 (the default for new keys) and ECDSA on P-256 with SHA-256. Public keys are
written one per line in OpenSSH form (`ssh-ed25519 AAAA... comment`), the form Flower's
`keys.csv` uses too; a line may also hold several comma-separated keys. Private keys are
unencrypted PEM (PKCS#8) or OpenSSH files. A key is named in logs by its fingerprint
(`SHA256:...` of its OpenSSH bytes, as `ssh-keygen -l` prints it).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stamen.common.errors import ConfigError

__all__ = [
    "KeyKind",
    "PrivateKey",
    "PublicKey",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_keys",
    "parse_public_key",
    "public_key_line",
    "sign",
    "verify",
    "write_key_pair",
]

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
KeyKind = Literal["ed25519", "ecdsa-p256"]
_KINDS = "use Ed25519 or ECDSA on P-256"


def generate_key(kind: KeyKind = "ed25519") -> PrivateKey:
    """A fresh private key of `kind`."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is `key`'s over `data`."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def public_key_line(key: PublicKey, comment: str = "") -> str:
    """`key` in OpenSSH form, the line that goes into the SuperLink's list."""
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = raw.decode("ascii")
    return f"{line} {comment}" if comment else line


def fingerprint(key: PublicKey) -> str:
    """`SHA256:<base64>` of the key's OpenSSH blob, as `ssh-keygen -l` shows it."""
    blob = base64.b64decode(public_key_line(key).split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(text: str) -> PublicKey:
    """One OpenSSH public key (`type base64 [comment]`); ValueError if it is not an
    Ed25519 or P-256 key."""
    try:
        key = serialization.load_ssh_public_key(text.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise ValueError(f"not an OpenSSH public key ({exc})") from None
    _check_kind(key)
    assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return key


def load_public_keys(path: Path) -> dict[str, PublicKey]:
    """The keys listed in `path`, by fingerprint. ConfigError naming the file and line
    for anything that is not a key; blank lines and `#` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the public key list {path}: {_reason(exc)}") from None
    keys: dict[str, PublicKey] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in line.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            try:
                key = parse_public_key(entry)
            except ValueError as exc:
                raise ConfigError(f"{path}, line {number}: {exc}") from None
            keys[fingerprint(key)] = key
    return keys


def load_private_key(path: Path) -> PrivateKey:
    """The private key in `path` (unencrypted PEM or OpenSSH); ConfigError saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the private key {path}: {_reason(exc)}") from None
    key: object
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted PEM or OpenSSH private key ({exc})"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: {type(key).__name__} keys are not accepted: {_KINDS}")
    try:
        _check_kind(key.public_key())
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return key


def write_key_pair(key: PrivateKey, stem: Path, comment: str = "") -> tuple[Path, Path]:
    """Write `stem` (the private key, PEM, mode 0600) and `stem.pub` (the OpenSSH line)."""
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(stem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private)
    public = stem.with_name(stem.name + ".pub")
    public.write_text(public_key_line(key.public_key(), comment) + "\n", encoding="ascii")
    return stem, public


def _check_kind(key: object) -> None:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    raise ValueError(f"{type(key).__name__} keys are not accepted: use Ed25519 or ECDSA on P-256")


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
