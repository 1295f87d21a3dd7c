"""Which app bundles a SuperNode agrees to run: its trusted publishers and pinned hashes.

A data owner decides this for their own node, without trusting the SuperLink's operator:
`--trusted-entities FILE` lists the publisher keys whose signatures it accepts (see
stamen.common.signing), `--allow-bundle sha256:...` pins exact bundles. Each one given
adds a requirement; a bundle must meet all of them before it is unpacked. The file is
TOML, one entry per publisher, the key id (its fingerprint) = its OpenSSH public key:

    "SHA256:Lw0Cq..." = "ssh-ed25519 AAAAC3Nz... alice@hospital"

(`stamen keys new` prints that line). Removing an entry revokes the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .bundle import bundle_hash
from .errors import ConfigError, PermissionDeniedError
from .signing import key_id, parse_public_key, read_signature, signature_valid

__all__ = [
    "TrustPolicy",
    "UntrustedBundleError",
    "load_trusted_entities",
    "parse_bundle_pin",
]

_PIN = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


class UntrustedBundleError(PermissionDeniedError):
    """A bundle this node refuses to run; `reason` says which requirement it fails."""

    def __init__(self, bundle: str, reason: str) -> None:
        super().__init__(f"bundle sha256:{bundle} {reason}")
        self.bundle = bundle
        self.reason = reason


def parse_bundle_pin(text: str) -> str:
    """`sha256:<64 hex>` (or the bare hex) -> the hex; ValueError otherwise."""
    match = _PIN.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a bundle hash (sha256:<64 hex digits>)")
    return match.group(1)


def load_trusted_entities(path: Path) -> dict[str, Ed25519PublicKey]:
    """The publisher keys `path` lists, by key id; ConfigError naming the entry at fault."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(
            f"--trusted-entities: cannot read {str(path)!r}: {exc.strerror}"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--trusted-entities: {str(path)!r} is not TOML: {exc}") from None
    keys: dict[str, Ed25519PublicKey] = {}
    for entry, value in document.items():
        where = f"--trusted-entities {str(path)!r}, entry {entry!r}"
        if not isinstance(value, str):
            raise ConfigError(f"{where}: the value must be an OpenSSH public key line")
        try:
            key = parse_public_key(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if key_id(key) != entry:
            raise ConfigError(f"{where}: that key's id is {key_id(key)}")
        keys[entry] = key
    if not keys:
        raise ConfigError(f"--trusted-entities: {str(path)!r} lists no publisher key")
    return keys


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """A node's requirements on bundles: signed by one of `publishers` (when any are
    given), and among `pins` (when any are given)."""

    publishers: Mapping[str, Ed25519PublicKey]
    pins: frozenset[str]

    @classmethod
    def from_options(cls, trusted_entities: Path | None, pins: Iterable[str]) -> TrustPolicy | None:
        """The policy of the node's flags; None when none is set (any bundle runs)."""
        publishers = {} if trusted_entities is None else load_trusted_entities(trusted_entities)
        pinned = frozenset(parse_bundle_pin(pin) for pin in pins)
        return cls(publishers, pinned) if publishers or pinned else None

    def describe(self) -> str:
        """What the node accepts, for its start-up log."""
        parts = []
        if self.publishers:
            parts.append(f"signed by one of {len(self.publishers)} trusted publisher(s)")
        if self.pins:
            parts.append(f"one of {len(self.pins)} pinned bundle(s)")
        return " and ".join(parts)

    def check(self, data: bytes, bundle: str) -> str | None:
        """Raise UntrustedBundleError unless bundle `bundle` (its bytes: `data`) meets
        every requirement; the publisher's key id when a signature was required."""
        if bundle_hash(data) != bundle:
            raise UntrustedBundleError(bundle, "does not match its bytes")
        if self.pins and bundle not in self.pins:
            raise UntrustedBundleError(bundle, "is not one this node allows (--allow-bundle)")
        if not self.publishers:
            return None
        untrusted = "is not signed by a trusted publisher"
        try:
            signature = read_signature(data)
        except ValueError:
            raise UntrustedBundleError(bundle, f"{untrusted}: it is not a zip archive") from None
        if signature is None:
            raise UntrustedBundleError(bundle, f"{untrusted}: it carries no signature")
        key = self.publishers.get(signature.key_id)
        if key is None:
            raise UntrustedBundleError(
                bundle, f"{untrusted}: its signer {signature.key_id} is not trusted here"
            )
        if not signature_valid(data, signature, key):
            raise UntrustedBundleError(
                bundle,
                f"{untrusted}: the signature of {signature.key_id} does not match its "
                "content (changed after signing, or copied from another bundle)",
            )
        return signature.key_id
