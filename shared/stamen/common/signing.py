"""Signed app bundles: a publisher's Ed25519 signature, carried inside the bundle.

A bundle is a zip archive (see stamen.common.bundle). Its signature travels in the
archive's comment (the last bytes of a zip, which unpacking ignores), so a signed bundle
is still one object that the SuperLink stores and ships unchanged, and its hash still
names its bytes. What is signed is the bundle's *content hash*: the sha256 of the archive
with its comment emptied, together with the signer's key id. Changing any byte of the
archive changes the content hash, so a tampered bundle, or a signature copied onto
another bundle, no longer verifies.

Keys are OpenSSH Ed25519 keys (`ssh-keygen -t ed25519` makes them too); a key is named by
its fingerprint (`SHA256:...` of its OpenSSH blob, as `ssh-keygen -l` prints it), which
is the key id a signature carries and a trust list names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ConfigError

__all__ = [
    "BundleSignature",
    "content_hash",
    "key_id",
    "load_private_key",
    "new_key_pair",
    "parse_public_key",
    "public_key_line",
    "read_signature",
    "sign_bundle",
    "signature_valid",
]

_MAGIC = "stamen-bundle-signature/1"
"""First line of a signed bundle's zip comment; also prefixes what is signed."""
_EOCD = b"PK\x05\x06"
"""The zip end-of-central-directory record: 22 bytes, then a comment of up to 64 KiB."""
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF


@dataclass(frozen=True, slots=True)
class BundleSignature:
    """A signature as a bundle carries it: who signed (key id), over which content."""

    key_id: str
    content: str
    """`sha256:<hex>` of the bundle with its comment emptied."""
    signature: bytes

    def comment(self) -> bytes:
        """The zip comment that carries it: one canonical encoding, nothing else."""
        body = {
            "content": self.content,
            "key-id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return f"{_MAGIC}\n{json.dumps(body, sort_keys=True)}\n".encode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    """`SHA256:<base64>` of the key's OpenSSH blob, as `ssh-keygen -l` shows it."""
    blob = base64.b64decode(public_key_line(key).split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def public_key_line(key: Ed25519PublicKey, comment: str = "") -> str:
    """`ssh-ed25519 AAAA... [comment]`: the key in OpenSSH form."""
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = raw.decode("ascii")
    return f"{line} {comment}" if comment else line


def parse_public_key(text: str) -> Ed25519PublicKey:
    """One OpenSSH public key line; ValueError when it is not an Ed25519 key."""
    try:
        key = serialization.load_ssh_public_key(text.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise ValueError(f"not an OpenSSH public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key (publisher keys are ssh-ed25519)")
    return key


def new_key_pair(path: Path, comment: str = "") -> Ed25519PublicKey:
    """Write a fresh Ed25519 private key to `path` (OpenSSH, mode 0600) and its public
    line to `path.pub`; ConfigError when `path` exists (a key is never overwritten)."""
    private = Ed25519PrivateKey.generate()
    data = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = private.public_key()
    try:
        with open(path, "xb", opener=_private_opener) as file:
            file.write(data)
        path.with_name(path.name + ".pub").write_text(public_key_line(public, comment) + "\n")
    except FileExistsError:
        raise ConfigError(f"{str(path)!r} exists: a key is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the key {str(path)!r}: {exc.strerror}") from None
    return public


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The unencrypted OpenSSH (or PEM) Ed25519 private key in `path`; ConfigError why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key {str(path)!r}: {exc.strerror}") from None
    key: object
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{str(path)!r} is not an unencrypted private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{str(path)!r} is not an Ed25519 key (make one: stamen keys new)")
    return key


def content_hash(data: bytes) -> str:
    """`sha256:<hex>` of the bundle `data` with its zip comment emptied: what a signature
    covers. ValueError when `data` does not end as a zip archive does."""
    eocd = _end_record(data)
    return "sha256:" + hashlib.sha256(data[: eocd + _EOCD_SIZE - 2] + b"\0\0").hexdigest()


def sign_bundle(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The bundle `data` signed by `key` (an earlier signature is replaced)."""
    eocd = _end_record(data)
    unsigned = data[: eocd + _EOCD_SIZE - 2]
    public_id = key_id(key.public_key())
    content = content_hash(data)
    signature = BundleSignature(public_id, content, key.sign(_signed_text(content, public_id)))
    comment = signature.comment()
    return unsigned + struct.pack("<H", len(comment)) + comment


def read_signature(data: bytes) -> BundleSignature | None:
    """The signature `data` carries, or None: no comment, or one that is not exactly a
    signature's canonical encoding (ValueError when `data` is not a zip archive)."""
    comment = data[_end_record(data) + _EOCD_SIZE :]
    first, _, rest = comment.partition(b"\n")
    if first != _MAGIC.encode("ascii"):
        return None
    try:
        body = json.loads(rest)
        signature = BundleSignature(
            key_id=body["key-id"],
            content=body["content"],
            signature=base64.b64decode(body["signature"], validate=True),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(signature.key_id, str) or not isinstance(signature.content, str):
        return None
    return signature if signature.comment() == comment else None


def signature_valid(data: bytes, signature: BundleSignature, key: Ed25519PublicKey) -> bool:
    """Whether `signature`, by `key`, covers exactly this bundle's content."""
    if signature.key_id != key_id(key) or signature.content != content_hash(data):
        return False
    try:
        key.verify(signature.signature, _signed_text(signature.content, signature.key_id))
    except InvalidSignature:
        return False
    return True


def _signed_text(content: str, public_id: str) -> bytes:
    return f"{_MAGIC}\0{content}\0{public_id}".encode("ascii")


def _end_record(data: bytes) -> int:
    """Offset of the end-of-central-directory record whose comment ends `data` exactly."""
    floor = max(0, len(data) - _EOCD_SIZE - _MAX_COMMENT)
    at = data.rfind(_EOCD, floor)
    while at >= 0:
        if at + _EOCD_SIZE <= len(data):
            (length,) = struct.unpack_from("<H", data, at + _EOCD_SIZE - 2)
            if at + _EOCD_SIZE + length == len(data):
                return at
        at = data.rfind(_EOCD, floor, at)
    raise ValueError("not a zip archive (no end-of-central-directory record)")
