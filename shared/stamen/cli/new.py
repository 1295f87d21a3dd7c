"""`stamen new NAME --template numpy|pytorch|sklearn`: an app folder that runs as made.

The folder holds a pyproject.toml (components, run-config defaults, a local-simulation
and a local-deployment federation), a package with the ClientApp, the ServerApp and the
task (model, data, training; the data is generated or bundled with scikit-learn, never
downloaded), and a README.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

import click

from stamen.common.errors import ConfigError

from .app import handled

__all__ = ["TEMPLATES", "new", "new_app"]

TEMPLATES = {
    "numpy": {"dependencies": '"stamen", "numpy>=1.26"', "lr": "0.1"},
    "pytorch": {"dependencies": '"stamen", "numpy>=1.26", "torch>=2.2"', "lr": "0.05"},
    "sklearn": {"dependencies": '"stamen", "numpy>=1.26", "scikit-learn>=1.4"', "lr": "0.5"},
}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def new_app(name: str, template: str, parent: Path, publisher: str = "you") -> Path:
    """Write the app `name` from `template` into `parent/name`; ConfigError if it cannot."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"NAME: {name!r} is not an app name (a letter, then letters, digits, '-' or '_')"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package):
        raise ConfigError(f"NAME: {name!r} is a Python keyword; choose another name")
    if template not in TEMPLATES:
        raise ConfigError(f"--template: {template!r} is not one of {', '.join(TEMPLATES)}")
    target = parent / name
    if target.exists():
        raise ConfigError(f"{str(target)!r} exists already: choose another NAME or folder")
    values = {
        "__NAME__": name,
        "__PACKAGE__": package,
        "__TEMPLATE__": template,
        "__PUBLISHER__": publisher,
        "__DEPENDENCIES__": TEMPLATES[template]["dependencies"],
        "__LR__": TEMPLATES[template]["lr"],
    }
    files = {
        "pyproject.toml": ("common", "pyproject.toml"),
        "README.md": ("common", "README.md"),
        f"{package}/__init__.py": ("common", "__init__.py"),
        f"{package}/client_app.py": ("common", "client_app.py"),
        f"{package}/server_app.py": ("common", "server_app.py"),
        f"{package}/task.py": (template, "task.py"),
    }
    templates = resources.files(__package__).joinpath("templates")
    try:
        (target / package).mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {str(target)!r}: {exc.strerror}") from None
    for destination, (folder, source) in files.items():
        text = templates.joinpath(folder, f"{source}.tmpl").read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        (target / destination).write_text(text)
    return target


@click.command()
@click.argument("name")
@click.option(
    "--template",
    type=click.Choice(sorted(TEMPLATES)),
    default="numpy",
    show_default=True,
    help="The ML framework of the app.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Where to make the app's folder.",
)
@click.option("--publisher", default="you", show_default=True, help="Who publishes the app.")
@handled
def new(name: str, template: str, parent: Path, publisher: str) -> None:
    """Make the app NAME: a folder ready for `stamen run NAME`."""
    target = new_app(name, template, parent, publisher)
    click.echo(f"made {target} ({template}); run it with: stamen run {target}")
