"""Package attributes imported on first use (PEP 562), so a package's import stays cheap.

Worker processes and CLIs import one module of a package (`stamen.common.errors`,
`stamen.workers.worker`) and must not pay for everything its `__init__` re-exports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package` that imports each name from its home module
    (relative, like ".records"; "" for a submodule) on first use and keeps it in the
    package's namespace. A Flower name Stamen does not support raises saying why."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            from stamen.compat.unsupported import unsupported_attributes

            return unsupported_attributes(package)(name)  # raises, saying why if it can
        if home:
            value = getattr(importlib.import_module(home, package), name)
        else:
            value = importlib.import_module(f".{name}", package)
        namespace[name] = value
        return value

    return __getattr__
