"""`python -m stamen.auth`: make node key pairs and operator tokens.

    python -m stamen.auth node-key keys/node-1          # keys/node-1 and keys/node-1.pub
    python -m stamen.auth operator-token alice --tokens keys/operators.txt --out keys/alice.token

A node's `.pub` line goes into the SuperLink's `--auth-list-public-keys` file; its private
key stays on the node (`--auth-supernode-private-key`). An operator token is written to
`--out` (mode 0600) and only its hash is appended to `--tokens` (the SuperLink's
`--auth-operator-tokens`). Bad input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from stamen.common.cli import EXIT_BAD_INPUT, fail

from .keys import fingerprint, generate_key, write_key_pair
from .tokens import hash_token, new_operator_token

PROG = "python -m stamen.auth"
_PATH = click.Path(path_type=Path, dir_okay=False)


@click.group(name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Make credentials for a Stamen federation (see SECURITY.md)."""


@main.command("node-key")
@click.argument("path", type=_PATH)
@click.option(
    "--kind",
    type=click.Choice(["ed25519", "ecdsa-p256"]),
    default="ed25519",
    show_default=True,
    help="The key's algorithm.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key.")
def node_key(path: Path, kind: str, force: bool) -> None:
    """Write a SuperNode key pair: PATH (private, 0600) and PATH.pub (the list line)."""
    if path.exists() and not force:
        sys.exit(fail(PROG, f"{path} exists: pass --force to replace it", EXIT_BAD_INPUT))
    key = generate_key("ed25519" if kind == "ed25519" else "ecdsa-p256")
    try:
        private, public = write_key_pair(key, path, comment=path.name)
    except OSError as exc:
        sys.exit(fail(PROG, f"cannot write {path}: {exc.strerror or exc}", EXIT_BAD_INPUT))
    click.echo(f"{private} (private), {public} (public, {fingerprint(key.public_key())})")


@main.command("operator-token")
@click.argument("name")
@click.option("--tokens", type=_PATH, required=True, help="The SuperLink's token hash file.")
@click.option("--out", type=_PATH, required=True, help="Where to write the token itself.")
def operator_token(name: str, tokens: Path, out: Path) -> None:
    """Make a token for operator NAME: the token to --out, its hash to --tokens."""
    if not name or any(ch.isspace() or ch == ":" for ch in name):
        sys.exit(
            fail(
                PROG,
                f"operator name {name!r} must be non-empty, with no spaces or ':'",
                EXIT_BAD_INPUT,
            )
        )
    token = new_operator_token()
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
        with tokens.open("a", encoding="utf-8") as file:
            file.write(f"{name}:{hash_token(token)}\n")
    except OSError as exc:
        sys.exit(fail(PROG, f"cannot write {exc.filename}: {exc.strerror or exc}", EXIT_BAD_INPUT))
    click.echo(f"token for {name} in {out}; its hash added to {tokens}")


if __name__ == "__main__":
    main()
