"""Stamen: an asyncio-native federated learning framework.

Write a ClientApp and a ServerApp once; run them in simulation on one machine and
deploy the same modules, unchanged, to real machines.

`__version__` is looked up on first use: importlib.metadata costs tens of milliseconds,
which every process (a simulation's workers, a CLI's start-up) would pay at import.
"""

from typing import TYPE_CHECKING

__all__ = ["__version__"]

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("stamen")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found
