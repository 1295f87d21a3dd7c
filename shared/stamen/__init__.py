"""Stamen: an asyncio-native federated learning framework.

Write a ClientApp and a ServerApp once; run them in simulation on one machine and
deploy the same modules, unchanged, to real machines.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stamen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
