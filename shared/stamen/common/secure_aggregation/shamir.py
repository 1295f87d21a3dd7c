"""Shamir secret sharing of byte strings, vectorized over a prime field.

A secret is cut into 3-byte pieces; each piece is the constant term of its own random
polynomial of degree `threshold - 1` over GF(P), P = 2**31 - 1, and share i is every
polynomial evaluated at x = i. Any `threshold` shares rebuild the secret (Lagrange at 0);
fewer reveal nothing about it. P < 2**31 keeps every product inside int64, so sharing
and rebuilding are numpy operations over all pieces at once.
"""

from __future__ import annotations

import secrets
import struct

import numpy as np

__all__ = ["PRIME", "ShamirError", "combine_shares", "create_shares"]

PRIME = 2**31 - 1
_PIECE = 3
_HEADER = struct.Struct("<IH")  # x, secret length


class ShamirError(ValueError):
    """Shares that cannot rebuild a secret (too few, duplicated or malformed)."""


def create_shares(secret: bytes, threshold: int, num: int) -> list[bytes]:
    """`num` shares of `secret`, any `threshold` of which rebuild it."""
    if not 1 <= threshold <= num < PRIME:
        raise ShamirError(f"need 1 <= threshold ({threshold}) <= shares ({num})")
    padded = secret + bytes(-len(secret) % _PIECE)
    pieces = np.frombuffer(padded, np.uint8).reshape(-1, _PIECE).astype(np.int64)
    constants = pieces[:, 0] | (pieces[:, 1] << 8) | (pieces[:, 2] << 16)
    randomness = np.frombuffer(secrets.token_bytes(8 * (threshold - 1) * len(constants)), "<u8")
    coefficients = (randomness % PRIME).astype(np.int64).reshape(threshold - 1, len(constants))
    xs = np.arange(1, num + 1, dtype=np.int64)[:, None]
    values = np.zeros((num, len(constants)), np.int64)
    for coefficient in coefficients[::-1]:  # Horner, highest degree first
        values = (values * xs + coefficient) % PRIME
    values = (values * xs + constants) % PRIME
    return [
        _HEADER.pack(x, len(secret)) + values[x - 1].astype("<u4").tobytes()
        for x in range(1, num + 1)
    ]


def combine_shares(shares: list[bytes]) -> bytes:
    """The secret behind `shares` (at least the threshold of them, distinct x)."""
    if not shares:
        raise ShamirError("no shares to combine")
    try:
        heads = [_HEADER.unpack_from(share) for share in shares]
        ys = np.stack([np.frombuffer(share[_HEADER.size :], "<u4") for share in shares])
    except (struct.error, ValueError) as exc:
        raise ShamirError(f"malformed share: {exc}") from None
    xs = [x for x, _ in heads]
    lengths = {length for _, length in heads}
    if len(set(xs)) != len(xs) or len(lengths) != 1 or 0 in xs:
        raise ShamirError("shares must have distinct, non-zero x and one secret length")
    secret = np.zeros(ys.shape[1], np.int64)
    for j, xj in enumerate(xs):
        numerator, denominator = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                numerator = numerator * xm % PRIME
                denominator = denominator * (xm - xj) % PRIME
        weight = numerator * pow(denominator, PRIME - 2, PRIME) % PRIME
        secret = (secret + ys[j].astype(np.int64) * weight) % PRIME
    if np.any(secret >= 1 << (8 * _PIECE)):
        raise ShamirError("the shares do not belong to one secret")
    pieces = np.stack([secret & 0xFF, (secret >> 8) & 0xFF, secret >> 16], axis=1)
    return pieces.astype(np.uint8).tobytes()[: lengths.pop()]
