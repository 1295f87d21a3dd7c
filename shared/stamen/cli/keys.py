"""`stamen keys new PATH`: a publisher key pair for signing app bundles.

The private key (OpenSSH Ed25519, mode 0600) signs: `stamen build --sign PATH`. The
line printed goes into a SuperNode's `--trusted-entities` file, whose owner then runs
the bundles it signs (see stamen.common.trust).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from stamen.common.bundle import Bundle, bundle_hash
from stamen.common.signing import (
    key_id,
    load_private_key,
    new_key_pair,
    public_key_line,
    sign_bundle,
)

from .app import handled

__all__ = ["keys", "sign_option", "signed"]

sign_option = click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="KEY",
    help="Sign the bundle with this publisher key (stamen keys new), for SuperNodes that "
    "run only trusted apps (--trusted-entities).",
)


def signed(bundle: Bundle, key: Path | None) -> Bundle:
    """`bundle` signed with the private key in `key` (a new hash); unchanged without one."""
    if key is None:
        return bundle
    data = sign_bundle(bundle.data, load_private_key(key))
    return dataclasses.replace(bundle, data=data, hash=bundle_hash(data))


@click.group()
def keys() -> None:
    """Publisher keys that sign app bundles."""


@keys.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--comment", default="", help="Comment of the public key line (who it is).")
@handled
def new(path: Path, comment: str) -> None:
    """Write a new Ed25519 key to PATH (and PATH.pub); print its --trusted-entities line."""
    public = new_key_pair(path, comment)
    # A TOML comment: the output as a whole can go into a --trusted-entities file.
    click.echo(f"# {path}: key {key_id(public)}; a SuperNode trusts it with this line in "
               "its --trusted-entities file:", err=True)  # fmt: skip
    click.echo(f'"{key_id(public)}" = "{public_key_line(public, comment)}"')
