"""Import, before the workers fork, what the app's libraries would import on first use.

torch imports `torch._dynamo` lazily the first time an optimizer steps: about a second of
CPU that every worker would pay on its own. The process that forks the workers (the
forkserver, or the simulation CLI that forks them from itself) imports it once instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

__all__ = ["LAZY_IMPORTS", "import_lazy_modules"]

logger = logging.getLogger(__name__)

LAZY_IMPORTS = {"torch": "torch._dynamo"}
"""Modules that a library imports on first use, by the library that does."""


def import_lazy_modules() -> None:
    """Import the lazy modules of the libraries already imported (the app's)."""
    for library, lazy in LAZY_IMPORTS.items():
        if library in sys.modules:
            try:
                importlib.import_module(lazy)
            except Exception as exc:  # an optimization only: a worker meets it again if it must
                logger.debug("could not import %s ahead of the workers: %s", lazy, exc)
