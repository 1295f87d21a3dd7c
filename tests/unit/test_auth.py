"""stamen.auth without a network: keys, signed requests, node and operator tokens, and the
authorities that judge each request (sans-IO, with a FakeClock)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from stamen.auth.authority import FleetAuthority, is_loopback
from stamen.auth.keys import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_keys,
    public_key_line,
    write_key_pair,
)
from stamen.auth.signing import (
    NODE_TOKEN_HEADER,
    SIGNATURE_HEADER,
    RequestSigner,
    SignatureVerifier,
)
from stamen.auth.tokens import (
    NodeTokens,
    OperatorTokens,
    hash_token,
    load_or_create_secret,
    new_operator_token,
)
from stamen.common.clock import FakeClock
from stamen.common.errors import (
    ConfigError,
    NodeNotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

PULL = "/stamen.v1.Fleet/PullMessages"
SECRET = b"s" * 32


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_a_signed_request_verifies_once_within_the_window(kind: str) -> None:
    clock = FakeClock()
    key = generate_key(kind)  # type: ignore[arg-type]
    signer = RequestSigner(key, clock)
    verifier = SignatureVerifier({signer.fingerprint: key.public_key()}, window=60, clock=clock)
    headers = signer.headers(PULL, "token")
    assert verifier.verify(PULL, headers | {NODE_TOKEN_HEADER: "token"}) == signer.fingerprint
    with pytest.raises(UnauthenticatedError, match="replay"):
        verifier.verify(PULL, headers | {NODE_TOKEN_HEADER: "token"})


def test_a_signature_is_bound_to_its_method_and_token() -> None:
    key = generate_key()
    signer = RequestSigner(key)
    verifier = SignatureVerifier({signer.fingerprint: key.public_key()})
    headers = signer.headers(PULL, "mine")
    with pytest.raises(UnauthenticatedError, match="does not verify"):
        verifier.verify("/stamen.v1.Fleet/UnregisterNode", headers | {NODE_TOKEN_HEADER: "mine"})
    with pytest.raises(UnauthenticatedError, match="does not verify"):
        verifier.verify(PULL, headers | {NODE_TOKEN_HEADER: "theirs"})
    forged = headers | {SIGNATURE_HEADER: signer.headers(PULL, "x")[SIGNATURE_HEADER]}
    with pytest.raises(UnauthenticatedError, match="does not verify"):
        verifier.verify(PULL, forged | {NODE_TOKEN_HEADER: "mine"})


def test_old_or_future_timestamps_and_remembered_nonces() -> None:
    clock = FakeClock()
    key = generate_key()
    signer = RequestSigner(key, clock)
    verifier = SignatureVerifier({signer.fingerprint: key.public_key()}, window=10, clock=clock)
    stale = signer.headers(PULL)
    clock.advance(11)
    with pytest.raises(UnauthenticatedError, match=r"-11s off the SuperLink's clock"):
        verifier.verify(PULL, stale)
    early = RequestSigner(key, FakeClock(wall=clock.time() + 30)).headers(PULL)
    with pytest.raises(UnauthenticatedError, match=r"\+30s off"):
        verifier.verify(PULL, early)
    fresh = signer.headers(PULL)
    verifier.verify(PULL, fresh)
    clock.advance(5)  # still inside the window: the nonce is remembered
    with pytest.raises(UnauthenticatedError, match="replay"):
        verifier.verify(PULL, fresh)


def test_unknown_revoked_and_unsigned_requests_are_refused_with_a_hint() -> None:
    allowed, stranger = generate_key(), generate_key("ecdsa-p256")
    verifier = SignatureVerifier({fingerprint(allowed.public_key()): allowed.public_key()})
    with pytest.raises(UnauthenticatedError, match="--auth-supernode-private-key"):
        verifier.verify(PULL, {})
    with pytest.raises(UnauthenticatedError, match="not on the SuperLink's list") as caught:
        verifier.verify(PULL, RequestSigner(stranger).headers(PULL))
    assert fingerprint(stranger.public_key()) in str(caught.value)
    verifier.verify(PULL, RequestSigner(allowed).headers(PULL))
    verifier.replace_keys({})  # revoked at run time
    with pytest.raises(UnauthenticatedError, match="revoked"):
        verifier.verify(PULL, RequestSigner(allowed).headers(PULL))


def test_node_tokens_name_their_node_and_key_and_nothing_else() -> None:
    tokens = NodeTokens(SECRET)
    token = tokens.issue(42, "SHA256:key")
    assert tokens.check(token, "SHA256:key") == 42
    with pytest.raises(PermissionDeniedError, match="not valid for node 42 with this key"):
        tokens.check(token, "SHA256:other")
    forged = token.replace("42.", "43.", 1)
    with pytest.raises(PermissionDeniedError, match="node 43"):
        tokens.check(forged, "SHA256:key")
    with pytest.raises(UnauthenticatedError, match="no node token"):
        tokens.check("")
    with pytest.raises(UnauthenticatedError, match="malformed"):
        tokens.check("42")
    # A token from a SuperLink with another secret (its state is gone): register again.
    with pytest.raises(NodeNotFoundError, match="node 42 is not registered"):
        NodeTokens(b"t" * 32).check(token, "SHA256:key")


def test_the_token_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.db.secret"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(None) != load_or_create_secret(None)
    path.write_text("zz\n")
    with pytest.raises(ConfigError, match="cannot read the node token secret"):
        load_or_create_secret(path)


def test_fleet_authority_takes_the_identity_from_the_token() -> None:
    authority = FleetAuthority(NodeTokens(SECRET))
    assert authority.authenticate("/stamen.v1.Fleet/RegisterNode", {}, None).node_id is None
    token = authority.issue(authority.authenticate("/stamen.v1.Fleet/RegisterNode", {}, None), 9)
    assert authority.authenticate(PULL, {NODE_TOKEN_HEADER: token}, None).node_id == 9
    with pytest.raises(UnauthenticatedError):
        authority.authenticate(PULL, {}, None)


def test_operator_tokens_are_checked_against_their_hashes(tmp_path: Path) -> None:
    token = new_operator_token()
    path = tmp_path / "operators.txt"
    path.write_text(f"# operators\nalice:{hash_token(token)}\n")
    tokens = OperatorTokens.load(path)
    assert tokens.check(f"Bearer {token}") == "alice"
    for header, reason in [
        (None, "requires an operator token"),
        ("Basic abc", "not 'Bearer TOKEN'"),
        (f"Bearer {token}x", "unknown or revoked"),
    ]:
        with pytest.raises(UnauthenticatedError, match=reason):
            tokens.check(header)
    assert token not in path.read_text()
    path.write_text("alice\n")
    with pytest.raises(ConfigError, match="line 1: expected NAME:SHA256HEX"):
        OperatorTokens.load(path)
    with pytest.raises(ConfigError, match="cannot read the operator token file"):
        OperatorTokens.load(tmp_path / "missing")


def test_which_addresses_stay_on_this_host() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.1.2.3")
    assert not is_loopback("superlink")


def test_key_files_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    key = generate_key("ecdsa-p256")
    private, public = write_key_pair(key, tmp_path / "node-1", comment="node-1")
    assert private.stat().st_mode & 0o777 == 0o600
    loaded = load_private_key(private)
    assert public_key_line(loaded.public_key()) == public_key_line(key.public_key())
    listing = tmp_path / "keys.csv"
    other = generate_key()
    listing.write_text(
        f"# allowed nodes\n{public.read_text().strip()},{public_key_line(other.public_key())}\n"
    )
    assert set(load_public_keys(listing)) == {
        fingerprint(key.public_key()),
        fingerprint(other.public_key()),
    }
    listing.write_text("ssh-ed25519 not-base64\n")
    with pytest.raises(ConfigError, match=f"{listing}, line 1: not an OpenSSH public key"):
        load_public_keys(listing)
    junk = tmp_path / "junk"
    junk.write_text("junk")
    with pytest.raises(ConfigError, match=f"{junk} is not an unencrypted PEM or OpenSSH"):
        load_private_key(junk)
    with pytest.raises(ConfigError, match="cannot read the private key"):
        load_private_key(tmp_path / "missing")


def test_the_credentials_cli_makes_keys_and_tokens(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stamen.auth", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli("node-key", str(tmp_path / "node"))
    assert made.returncode == 0, made.stderr
    assert load_private_key(tmp_path / "node")
    again = cli("node-key", str(tmp_path / "node"))
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1
    assert "--force" in again.stderr
    tokens, out = tmp_path / "operators.txt", tmp_path / "alice.token"
    made = cli("operator-token", "alice", "--tokens", str(tokens), "--out", str(out))
    assert made.returncode == 0, made.stderr
    token = out.read_text().strip()
    assert OperatorTokens.load(tokens).check(f"Bearer {token}") == "alice"
    bad = cli("operator-token", "a b", "--tokens", str(tokens), "--out", str(out))
    assert bad.returncode == 2
    assert "operator name" in bad.stderr
