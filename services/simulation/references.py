"""Checking a `module:attribute` reference without importing anything.

Importing an app can take seconds (torch), so a simulation checks its references first:
well formed, and a module of that name can be found (in the app directory first). A
typo then fails at once, in one line, before any worker starts.
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

from stamen.common.errors import AppLoadError

__all__ = ["check_reference"]

_FORMAT_HINT = "expected 'module:attribute' (for example 'client:app' or 'pkg.mod:app')"


def check_reference(reference: str, directory: Path | None) -> None:
    """AppLoadError unless `reference` is well formed and its (top-level) module can be
    found, in `directory` first; nothing is imported."""
    module_name, colon, attribute = reference.partition(":")
    if not colon or not _is_dotted(module_name) or not _is_dotted(attribute):
        raise AppLoadError(reference, _FORMAT_HINT)
    top = module_name.partition(".")[0]
    path = list(sys.path)
    if directory is None:
        if top in sys.modules:
            return
    else:
        resolved = directory.expanduser().resolve()
        if not resolved.is_dir():
            problem = "is not a directory" if resolved.exists() else "does not exist"
            raise AppLoadError(reference, f"directory {str(directory)!r} {problem}")
        path.insert(0, str(resolved))
    if importlib.machinery.PathFinder.find_spec(top, path) is None:
        where = f" in {str(directory)!r} or on sys.path" if directory is not None else ""
        raise AppLoadError(
            reference,
            f"no module named {top!r}{where} (pass --dir with the folder that holds it)",
        )


def _is_dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))
