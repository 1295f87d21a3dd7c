"""Who may call the SuperLink's APIs, built from its settings (see SECURITY.md).

- Fleet: every node's identity comes from the token its registration returned, under a
  secret kept next to the database (`<database>.secret`; a fresh one for `:memory:`).
  With `--enable-supernode-auth`, every Fleet request must also be signed by a key on the
  `--auth-list-public-keys` list, and the token is bound to that key.
- Control and ServerAppIo: with `--auth-operator-tokens FILE`, a bearer token whose hash
  is in FILE; without it, only callers on this host when TLS is on, and anyone when the
  SuperLink runs `--insecure` (said in the log line).

`Credentials` holds both; `reload()` (the CLI calls it on SIGHUP) reads the key list and
the token file again, so keys and tokens are enrolled or revoked without a restart.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stamen.auth.authority import FleetAuthority, OperatorAuthority, is_loopback
from stamen.auth.keys import load_public_keys
from stamen.auth.signing import SignatureVerifier
from stamen.auth.tokens import NodeTokens, OperatorTokens, load_or_create_secret
from stamen.common.config import split_address
from stamen.common.errors import ConfigError

from .settings import SuperLinkSettings

__all__ = [
    "Credentials",
    "fleet_authority",
    "log_security",
    "operator_authority",
    "secret_path",
]

logger = logging.getLogger(__name__)


def secret_path(database: str) -> Path | None:
    """Where the node token secret of a SuperLink with `database` lives (None: nowhere)."""
    return None if database == ":memory:" else Path(f"{database}.secret")


def fleet_authority(settings: SuperLinkSettings) -> FleetAuthority:
    """ConfigError for a key list or secret that cannot be read."""
    tokens = NodeTokens(load_or_create_secret(secret_path(settings.database)))
    verifier = None
    if settings.enable_supernode_auth:
        assert settings.auth_list_public_keys is not None  # the settings check it
        keys = load_public_keys(settings.auth_list_public_keys)
        verifier = SignatureVerifier(keys)
        logger.info(
            "SuperNode authentication on: %d allowed key(s) from %s",
            len(keys),
            settings.auth_list_public_keys,
        )
    return FleetAuthority(tokens, verifier)


def operator_authority(settings: SuperLinkSettings) -> OperatorAuthority:
    """ConfigError for a token file that cannot be read."""
    if settings.auth_operator_tokens is not None:
        return OperatorAuthority(OperatorTokens.load(settings.auth_operator_tokens))
    return OperatorAuthority(local_only=not settings.insecure)


class Credentials:
    """The authorities of one SuperLink (ConfigError for files that cannot be read)."""

    def __init__(self, settings: SuperLinkSettings) -> None:
        self.settings = settings
        self.fleet = fleet_authority(settings)
        self.operators = operator_authority(settings)

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
        if keys is not None and self.fleet.verifier is not None:
            self.fleet.verifier.replace_keys(keys)
            logger.info("reloaded %d allowed SuperNode key(s)", len(keys))
        if tokens is not None:
            self.operators.tokens = tokens
            logger.info("reloaded the operator tokens")
        return True


def log_security(settings: SuperLinkSettings, serverappio: str, control: str) -> None:
    """Say what protects the operator APIs, and warn where nothing does."""
    if settings.auth_operator_tokens is not None:
        logger.info("Control and ServerAppIo require an operator token")
    elif settings.insecure:
        logger.warning(
            "--insecure: no TLS and no operator authentication: anyone who can reach "
            "these ports can join, read and control runs (local development only)"
        )
    else:
        logger.info(
            "Control and ServerAppIo take calls from this host only "
            "(--auth-operator-tokens admits operators on other hosts)"
        )
    consequence = (
        "anyone who reaches it controls runs"
        if settings.insecure
        else "callers from other hosts are refused without --auth-operator-tokens"
    )
    for name, address in (("ServerAppIo", serverappio), ("Control", control)):
        host, _ = split_address(address)
        if settings.auth_operator_tokens is None and not is_loopback(host):
            logger.warning("%s API listens on %s, beyond this host: %s", name, address, consequence)
