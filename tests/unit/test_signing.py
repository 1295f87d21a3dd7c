"""Signed bundles and trust lists: what a SuperNode accepts, and every way it must not."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stamen.common.bundle import build_bundle, bundle_hash, unpack_bundle
from stamen.common.errors import ConfigError, PermissionDeniedError
from stamen.common.signing import (
    content_hash,
    key_id,
    load_private_key,
    new_key_pair,
    public_key_line,
    read_signature,
    sign_bundle,
    signature_valid,
)
from stamen.common.trust import (
    TrustPolicy,
    UntrustedBundleError,
    load_trusted_entities,
    parse_bundle_pin,
)

PYPROJECT = """
[project]
name = "app"
version = "1.0"

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"
"""


def make_app(root: Path, marker: str = "first") -> bytes:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "server.py").write_text("app = 1\n")
    (root / "client.py").write_text(f"app = {marker!r}\n")
    return build_bundle(root).data


@pytest.fixture
def bundle(tmp_path: Path) -> bytes:
    return make_app(tmp_path / "app")


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def trusting(*keys: Ed25519PrivateKey) -> TrustPolicy:
    return TrustPolicy({key_id(k.public_key()): k.public_key() for k in keys}, frozenset())


def refusal(policy: TrustPolicy, data: bytes) -> str:
    with pytest.raises(UntrustedBundleError) as caught:
        policy.check(data, bundle_hash(data))
    assert isinstance(caught.value, PermissionDeniedError)
    return str(caught.value)


def test_a_signed_bundle_verifies_and_still_unpacks(
    bundle: bytes, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    signed = sign_bundle(bundle, key)
    assert content_hash(signed) == content_hash(bundle)
    signature = read_signature(signed)
    assert signature is not None
    assert signature.key_id == key_id(key.public_key())
    assert signature.content == content_hash(bundle)
    assert signature_valid(signed, signature, key.public_key())
    assert trusting(key).check(signed, bundle_hash(signed)) == key_id(key.public_key())
    folder = unpack_bundle(signed, bundle_hash(signed), tmp_path / "cache")
    assert (folder / "client.py").read_text() == "app = 'first'\n"
    with zipfile.ZipFile(BytesIO(signed)) as archive:
        assert archive.testzip() is None


def test_signing_again_replaces_the_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    twice = sign_bundle(sign_bundle(bundle, other), key)
    assert twice == sign_bundle(bundle, key)
    assert trusting(key).check(twice, bundle_hash(twice))


def test_an_unsigned_bundle_is_refused(bundle: bytes, key: Ed25519PrivateKey) -> None:
    message = refusal(trusting(key), bundle)
    assert message == (
        f"bundle sha256:{bundle_hash(bundle)} is not signed by a trusted publisher: "
        "it carries no signature"
    )


def test_a_bundle_changed_by_one_byte_after_signing_is_refused(
    bundle: bytes, key: Ed25519PrivateKey
) -> None:
    signed = sign_bundle(bundle, key)
    for offset in (0, 40, len(bundle) // 2, len(bundle) - 30):  # headers, data, directory
        tampered = bytearray(signed)
        tampered[offset] ^= 0x01
        message = refusal(trusting(key), bytes(tampered))
        assert "does not match its content" in message, offset


def test_a_valid_signature_by_an_untrusted_key_is_refused(
    bundle: bytes, key: Ed25519PrivateKey
) -> None:
    stranger = Ed25519PrivateKey.generate()
    message = refusal(trusting(key), sign_bundle(bundle, stranger))
    assert f"its signer {key_id(stranger.public_key())} is not trusted here" in message


def test_a_signature_replayed_on_another_bundle_is_refused(
    bundle: bytes, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    signed = sign_bundle(bundle, key)
    evil = make_app(tmp_path / "evil", marker="evil")
    comment = signed[len(bundle) :]  # the signature, as the signed bundle carries it
    replayed = evil[:-2] + len(comment).to_bytes(2, "little") + comment
    signature = read_signature(replayed)
    assert signature is not None
    assert signature == read_signature(signed)
    assert "does not match its content" in refusal(trusting(key), replayed)


def test_a_forged_or_extended_comment_counts_as_unsigned(
    bundle: bytes, key: Ed25519PrivateKey
) -> None:
    signed = sign_bundle(bundle, key)
    comment = signed[len(bundle) :]
    padded = comment.replace(b'{"content"', b'{ "content"')  # same JSON, not canonical
    variant = bundle[:-2] + len(padded).to_bytes(2, "little") + padded
    assert read_signature(variant) is None
    assert "carries no signature" in refusal(trusting(key), variant)
    assert "not a zip archive" in refusal(trusting(key), signed + b"x")


def test_pins_allow_only_their_bundles(bundle: bytes, tmp_path: Path) -> None:
    other = make_app(tmp_path / "other", marker="other")
    policy = TrustPolicy({}, frozenset({bundle_hash(bundle)}))
    assert policy.check(bundle, bundle_hash(bundle)) is None
    assert refusal(policy, other).endswith("is not one this node allows (--allow-bundle)")
    with pytest.raises(UntrustedBundleError, match="does not match its bytes"):
        policy.check(other, bundle_hash(bundle))


def test_pins_and_publishers_are_both_required(bundle: bytes, key: Ed25519PrivateKey) -> None:
    signed = sign_bundle(bundle, key)
    publishers = {key_id(key.public_key()): key.public_key()}
    both = TrustPolicy(publishers, frozenset({bundle_hash(bundle)}))
    assert "--allow-bundle" in refusal(both, signed)  # signed, but not the pinned bytes
    assert "carries no signature" in refusal(both, bundle)  # pinned, but unsigned
    accepting = TrustPolicy(publishers, frozenset({bundle_hash(signed)}))
    assert accepting.check(signed, bundle_hash(signed)) == key_id(key.public_key())
    assert accepting.describe() == (
        "signed by one of 1 trusted publisher(s) and one of 1 pinned bundle(s)"
    )


def test_bundle_pins_are_parsed_strictly() -> None:
    digest = "ab" * 32
    assert parse_bundle_pin(f"sha256:{digest}") == digest
    assert parse_bundle_pin(digest.upper()) == digest
    for bad in ("sha256:abc", "md5:" + digest, digest + "00", ""):
        with pytest.raises(ValueError, match="is not a bundle hash"):
            parse_bundle_pin(bad)


def test_keys_are_made_once_and_load_back(tmp_path: Path, bundle: bytes) -> None:
    path = tmp_path / "publisher"
    public = new_key_pair(path, "alice@lab")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "publisher.pub").read_text() == public_key_line(public, "alice@lab") + "\n"
    private = load_private_key(path)
    assert key_id(private.public_key()) == key_id(public)
    with pytest.raises(ConfigError, match="is never overwritten"):
        new_key_pair(path)
    with pytest.raises(ConfigError, match="cannot read the key"):
        load_private_key(tmp_path / "missing")
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(ConfigError, match="is not an unencrypted private key"):
        load_private_key(tmp_path / "junk")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen here")
def test_an_ssh_keygen_key_signs_and_its_id_is_its_fingerprint(
    tmp_path: Path, bundle: bytes
) -> None:
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob", "-f", str(path)], check=True
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(path) + ".pub"], check=True, capture_output=True, text=True
    )
    private = load_private_key(path)
    assert listed.stdout.split()[1] == key_id(private.public_key())
    signed = sign_bundle(bundle, private)
    assert trusting(private).check(signed, bundle_hash(signed))


def entities(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trusted.toml"
    path.write_text(text)
    return path


def test_a_trusted_entities_file_lists_keys_by_id(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    public = key.public_key()
    line = f'"{key_id(public)}" = "{public_key_line(public, "alice")}"\n'
    keys = load_trusted_entities(entities(tmp_path, "# publishers\n" + line))
    assert list(keys) == [key_id(public)]
    policy = TrustPolicy.from_options(entities(tmp_path, line), ["sha256:" + "0" * 64])
    assert policy is not None
    assert policy.pins == {"0" * 64}
    assert TrustPolicy.from_options(None, []) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "lists no publisher key"),
        ("x = ", "is not TOML"),
        ('"SHA256:x" = 3', "must be an OpenSSH public key line"),
        ('"SHA256:x" = "ssh-ed25519 AAAA"', "not an OpenSSH public key"),
        ('"SHA256:x" = "{rsa}"', "not an Ed25519 key"),
        ('"SHA256:wrong" = "{ed}"', "that key's id is SHA256:"),
    ],
)
def test_a_bad_trusted_entities_file_is_one_clear_error(
    tmp_path: Path, text: str, error: str
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    rsa_line = rsa_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    ed_line = public_key_line(Ed25519PrivateKey.generate().public_key())
    path = entities(tmp_path, text.replace("{rsa}", rsa_line).replace("{ed}", ed_line))
    with pytest.raises(ConfigError, match="--trusted-entities") as caught:
        load_trusted_entities(path)
    assert error in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_trusted_entities(tmp_path / "missing.toml")
