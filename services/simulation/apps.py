"""The two apps of a simulation, named so that worker processes can import them.

Workers import the ClientApp themselves (each process needs its own copy), so an app given
as an object is turned back into its `module:attribute` reference by finding the module
that holds it. A reference given as text is only checked here (see `references`): the
import, which can take seconds (torch), happens in the workers and, for the ServerApp, in
this process while the workers import theirs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from stamen.client import ClientApp
from stamen.common.errors import UserInputError
from stamen.common.loading import load_app
from stamen.server import ServerApp

from .references import check_reference

__all__ = ["AppRef", "client_app_ref", "server_app_of"]


@dataclass(frozen=True, slots=True)
class AppRef:
    """A `module:attribute` reference and the directory to import it from (None: sys.path)."""

    reference: str
    directory: Path | None


def client_app_ref(client_app: ClientApp | str, directory: Path | None) -> AppRef:
    """The reference workers import the ClientApp by; checked, or found for an object."""
    if isinstance(client_app, str):
        check_reference(client_app, directory)
        return AppRef(client_app, directory)
    if not isinstance(client_app, ClientApp):
        raise UserInputError(
            f"client_app must be a ClientApp or a 'module:attribute' string, "
            f"got {type(client_app).__name__}"
        )
    module, attribute = _find_holder(client_app)
    return AppRef(f"{module.__name__}:{attribute}", _import_root(module))


def server_app_of(server_app: ServerApp | str, directory: Path | None) -> tuple[ServerApp, str]:
    """The ServerApp to run here and its reference ("" when it has none): a string is
    imported now (AppLoadError, one line, when it cannot be)."""
    if isinstance(server_app, str):
        return load_app(server_app, ServerApp, directory), server_app
    if not isinstance(server_app, ServerApp):
        raise UserInputError(
            f"server_app must be a ServerApp or a 'module:attribute' string, "
            f"got {type(server_app).__name__}"
        )
    try:
        module, attribute = _find_holder(server_app)
    except UserInputError:
        return server_app, ""  # it runs in this process: a name is only for the records
    return server_app, f"{module.__name__}:{attribute}"


def _find_holder(app: Any) -> tuple[ModuleType, str]:
    """The module (an importable one, `__main__` last) with a global that is `app`."""
    found: list[tuple[ModuleType, str]] = []
    for name, module in list(sys.modules.items()):
        if module is None or name == "__mp_main__" or getattr(module, "__file__", None) is None:
            continue
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attribute, value in list(namespace.items()):
            if value is app and not attribute.startswith("__"):
                found.append((module, attribute))
                break
    found.sort(key=lambda entry: (entry[0].__name__ == "__main__", entry[0].__name__))
    if not found:
        raise UserInputError(
            f"cannot find the {type(app).__name__} in any module, so worker processes "
            "could not import it: define it at module level (app = ClientApp(...)) in a "
            "file, or pass 'module:attribute'"
        )
    return found[0]


def _import_root(module: ModuleType) -> Path | None:
    """The directory to import `module` from by its name (None for `__main__`, which
    multiprocessing gives its workers itself)."""
    if module.__name__ == "__main__":
        return None
    file = Path(str(module.__file__)).resolve()
    root = file.parent.parent if file.name == "__init__.py" else file.parent
    for _ in range(module.__name__.count(".")):
        root = root.parent
    return root
