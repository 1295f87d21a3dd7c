"""Key agreement, share encryption and mask streams, all from `cryptography`.

Each node holds two X25519 key pairs: pair 1 agrees the pairwise mask seeds, pair 2 the
keys that encrypt the Shamir shares a node sends its neighbours through the server.
An agreed secret goes through HKDF-SHA256 (with a purpose label) before use; shares are
sealed with AES-256-GCM bound to (source, destination); a mask is the AES-256-CTR
keystream of its seed, added in cache-sized steps.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "MASK_PURPOSE",
    "SHARE_PURPOSE",
    "DecryptionError",
    "agree",
    "apply_mask",
    "decrypt",
    "encrypt",
    "generate_key_pair",
]

MASK_PURPOSE = b"stamen-secaggplus pairwise mask"
SHARE_PURPOSE = b"stamen-secaggplus share encryption"
_NONCE = 12
_CTR_IV = bytes(16)  # each seed keys exactly one stream, so a fixed counter start is safe


class DecryptionError(ValueError):
    """A ciphertext that does not open with the key agreed with its claimed sender."""


def generate_key_pair() -> tuple[bytes, bytes]:
    """A fresh X25519 (private, public) key pair as raw 32-byte strings."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw_private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def agree(private_key: bytes, public_key: bytes, purpose: bytes) -> bytes:
    """The 32-byte key both ends derive from ECDH(private, their public), per purpose."""
    shared = X25519PrivateKey.from_private_bytes(private_key).exchange(
        X25519PublicKey.from_public_bytes(public_key)
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(shared)


def _binding(src: int, dst: int) -> bytes:
    return struct.pack("<QQ", src, dst)


def encrypt(key: bytes, plaintext: bytes, src: int, dst: int) -> bytes:
    """AES-GCM(plaintext), authenticated together with who sends it to whom."""
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _binding(src, dst))


def decrypt(key: bytes, ciphertext: bytes, src: int, dst: int) -> bytes:
    try:
        return AESGCM(key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], _binding(src, dst))
    except InvalidTag:
        raise DecryptionError(
            f"the share from node {src} to node {dst} does not decrypt: tampered or misrouted"
        ) from None


_CHUNK = 1 << 16
"""Entries per step of `apply_mask`: its buffers stay in cache and are never re-allocated
(a fresh model-sized array costs page faults that dominate on a busy machine)."""


def apply_mask(vector: npt.NDArray[np.uint32], seed: bytes, *, subtract: bool = False) -> None:
    """`vector` +/-= the AES-256-CTR keystream of `seed` read as uint32, in place, mod 2**32."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_CTR_IV)).encryptor()
    zeros = bytes(4 * min(_CHUNK, vector.size))
    buffer = bytearray(len(zeros) + 15)  # update_into wants room for a block more
    mask = np.frombuffer(buffer, dtype="<u4", count=len(zeros) // 4)
    combine = np.subtract if subtract else np.add
    for start in range(0, vector.size, _CHUNK):
        part = vector[start : start + _CHUNK]
        encryptor.update_into(zeros[: 4 * part.size], buffer)
        combine(part, mask[: part.size], out=part)
