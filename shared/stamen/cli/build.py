"""`stamen build [APP_DIR]`: the app as a bundle, named by its hash (see stamen.common.bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stamen.common.bundle import MAX_BUNDLE_SIZE, build_bundle
from stamen.common.errors import ConfigError

from .app import handled
from .keys import sign_option, signed

__all__ = ["build", "max_size_option"]

max_size_option = click.option(
    "--max-bundle-size",
    "max_size",
    type=click.FloatRange(min=0, min_open=True),
    default=MAX_BUNDLE_SIZE / 2**20,
    show_default=True,
    envvar="STAMEN_MAX_BUNDLE_SIZE",
    metavar="MIB",
    help="Refuse to build a bundle larger than this many MiB (a SuperLink has its own "
    "limit, `stamen-superlink --max-bundle-size`).",
)


@click.command()
@click.argument("app_dir", default=".", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the bundle to [default: APP_DIR].",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@sign_option
@max_size_option
@handled
def build(
    app_dir: Path, output: Path | None, fmt: str, sign_key: Path | None, max_size: float
) -> None:
    """Bundle the app in APP_DIR: a zip of its pyproject and code, reproducible (the same
    files give the same hash), written as NAME-VERSION.HASH8.bundle."""
    bundle = signed(build_bundle(app_dir, int(max_size * 2**20)), sign_key)
    folder = app_dir if output is None else output
    path = folder / bundle.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bundle.data)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {str(path)!r}: {exc.strerror}") from None
    if fmt == "json":
        summary = {"path": str(path), "sha256": bundle.hash, "files": list(bundle.files)}
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo(f"{path} (sha256 {bundle.hash}, {len(bundle.files)} files)")
