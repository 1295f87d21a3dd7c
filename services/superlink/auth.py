"""Who may call the SuperLink's APIs, built from its settings (see SECURITY.md).

- Fleet: every node's identity comes from the token its registration returned, under a
  secret kept next to the database (`<database>.secret`; a fresh one for `:memory:`).
  With `--enable-supernode-auth`, every Fleet request must also be signed by a key on the
  `--auth-list-public-keys` list, and the token is bound to that key.
- Control and ServerAppIo: with `--auth-operator-tokens FILE`, a bearer token whose hash
  is in FILE. Without it they are open to whoever reaches them, which a TLS SuperLink
  allows only with `--allow-unauthenticated-operators`: they listen on 127.0.0.1 by
  default, and a wider address (or `--insecure`, or that flag) is said in a warning.
- ServerAppIo also admits the runners the SuperLink launches, each with the launch
  token it was handed (in its environment) for as long as it runs.

`Credentials` holds both; `reload()` (the CLI calls it on SIGHUP) reads the key list and
the token file again, so keys and tokens are enrolled or revoked without a restart.
`NodeKeyRegistry` does the same for keys through the NodeKeys API, writing the list file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from stamen.auth.authority import (
    FleetAuthority,
    OperatorAuthority,
    RunnerAuthority,
    is_loopback,
)
from stamen.auth.keys import (
    PublicKey,
    fingerprint,
    load_public_keys,
    parse_public_key,
    public_key_line,
)
from stamen.auth.signing import SignatureVerifier
from stamen.auth.tokens import LaunchTokens, NodeTokens, OperatorTokens, load_or_create_secret
from stamen.common.config import split_address
from stamen.common.errors import ConfigError, InvalidMessageError

from .settings import SuperLinkSettings

__all__ = [
    "Credentials",
    "NodeKeyRegistry",
    "log_security",
    "node_verifier",
    "operator_authority",
    "secret_path",
]

logger = logging.getLogger(__name__)


def secret_path(database: str) -> Path | None:
    """Where the node token secret of a SuperLink with `database` lives (None: nowhere)."""
    return None if database == ":memory:" else Path(f"{database}.secret")


def node_verifier(settings: SuperLinkSettings) -> SignatureVerifier | None:
    """The signature check of node authentication (None when it is off); ConfigError for
    a key list that cannot be read."""
    if not settings.enable_supernode_auth:
        return None
    assert settings.auth_list_public_keys is not None  # the settings check it
    keys = load_public_keys(settings.auth_list_public_keys)
    logger.info(
        "SuperNode authentication on: %d allowed key(s) from %s",
        len(keys),
        settings.auth_list_public_keys,
    )
    return SignatureVerifier(keys)


def operator_authority(settings: SuperLinkSettings) -> OperatorAuthority:
    """ConfigError for a token file that cannot be read."""
    if settings.auth_operator_tokens is not None:
        return OperatorAuthority(OperatorTokens.load(settings.auth_operator_tokens))
    return OperatorAuthority()


class Credentials:
    """The authorities of one SuperLink (ConfigError for files that cannot be read)."""

    def __init__(self, settings: SuperLinkSettings) -> None:
        self.settings = settings
        self.verifier = node_verifier(settings)
        self.operators = operator_authority(settings)
        self.launched = LaunchTokens()
        """The tokens of the runners this SuperLink started (ServerAppIo only)."""
        self.serverappio = RunnerAuthority(self.operators, self.launched)
        self.node_keys = NodeKeyRegistry(settings.auth_list_public_keys, self.verifier)
        self._fleet: FleetAuthority | None = None

    def fleet(self) -> FleetAuthority:
        """The Fleet authority. Its token secret is read, or made, next to the database
        on first use (once serving begins, not when the settings are checked)."""
        if self._fleet is None:
            secret = load_or_create_secret(secret_path(self.settings.database))
            self._fleet = FleetAuthority(NodeTokens(secret), self.verifier)
        return self._fleet

    def reload(self) -> bool:
        """Read the key list and the operator token file again; on a bad file, log why
        and keep what was in force. True when the new files took effect."""
        settings = self.settings
        try:
            keys = None
            if settings.auth_list_public_keys is not None:
                keys = load_public_keys(settings.auth_list_public_keys)
            tokens = None
            if settings.auth_operator_tokens is not None:
                tokens = OperatorTokens.load(settings.auth_operator_tokens)
        except ConfigError as exc:
            logger.error("credentials not reloaded, the previous ones stay in force: %s", exc)
            return False
        if keys is not None and self.verifier is not None:
            self.verifier.replace_keys(keys)
            logger.info("reloaded %d allowed SuperNode key(s)", len(keys))
        if tokens is not None:
            self.operators.tokens = tokens
            logger.info("reloaded the operator tokens")
        return True


class NodeKeyRegistry:
    """Implements `stamen.transport.api.NodeKeysApi`: the allowed keys, changed at run
    time and written back to the key list file (one OpenSSH line per key)."""

    def __init__(self, path: Path | None, verifier: SignatureVerifier | None) -> None:
        self._path = path
        self._verifier = verifier

    async def list_node_keys(self) -> list[str]:
        return sorted(public_key_line(key) for key in self._enabled().keys.values())

    async def add_node_key(self, public_key: str) -> list[str]:
        verifier, path = self._enabled(), self._file()
        key = _parse(public_key)
        if fingerprint(key) not in verifier.keys:
            with path.open("a", encoding="utf-8") as listing:
                listing.write(public_key_line(key) + "\n")
            logger.info("node key %s enrolled", fingerprint(key))
        return await self._reload()

    async def remove_node_key(self, public_key: str) -> list[str]:
        verifier, path = self._enabled(), self._file()
        name = fingerprint(_parse(public_key))
        if name in verifier.keys:
            kept = [_without(line, name) for line in path.read_text(encoding="utf-8").splitlines()]
            _write_atomically(path, "".join(line + "\n" for line in kept if line is not None))
            logger.info("node key %s revoked", name)
        return await self._reload()

    async def _reload(self) -> list[str]:
        self._enabled().replace_keys(load_public_keys(self._file()))
        return await self.list_node_keys()

    def _enabled(self) -> SignatureVerifier:
        if self._verifier is None:
            raise InvalidMessageError(
                "node authentication is off on this SuperLink (--enable-supernode-auth)"
            )
        return self._verifier

    def _file(self) -> Path:
        assert self._path is not None  # node authentication on: the settings require it
        return self._path


def _parse(public_key: str) -> PublicKey:
    try:
        return parse_public_key(public_key)
    except ValueError as exc:
        raise InvalidMessageError(f"node key: {exc}") from None


def _without(line: str, name: str) -> str | None:
    """`line` of the key list without the key named `name` (None: nothing left)."""
    entries = [entry.strip() for entry in line.split(",")]
    kept = []
    for entry in entries:
        try:
            if entry and not entry.startswith("#") and fingerprint(parse_public_key(entry)) == name:
                continue
        except ValueError:
            pass
        kept.append(entry)
    if not any(kept) and any(entries):
        return None
    return ",".join(kept)


def _write_atomically(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def log_security(settings: SuperLinkSettings, serverappio: str, control: str) -> None:
    """Say what protects the operator APIs, and warn where nothing does."""
    if settings.auth_operator_tokens is not None:
        logger.info("Control and ServerAppIo require an operator token")
    elif settings.allow_unauthenticated_operators:
        logger.warning(
            "--allow-unauthenticated-operators: Control and ServerAppIo take calls with no "
            "operator token: anyone who can reach them can submit, read and stop runs "
            "(local development only)"
        )
    elif settings.insecure:
        logger.warning(
            "--insecure: no TLS and no operator authentication: anyone who can reach "
            "these ports can join, read and control runs (local development only)"
        )
    for name, address in (("ServerAppIo", serverappio), ("Control", control)):
        host, _ = split_address(address)
        if settings.auth_operator_tokens is None and not is_loopback(host):
            logger.warning(
                "%s API listens on %s, beyond this host, without operator tokens: anyone "
                "who reaches it controls runs (--auth-operator-tokens)",
                name,
                address,
            )
