"""The `stamen` command: new, build, run, ls, log, stop, pull, keys (as Flower's `flwr`).

User code, like `flwr.cli`: it reaches a SuperLink only through its Control API and runs
a local simulation through the `stamen-simulation` command, never by importing a service.
"""

from .app import main

__all__ = ["main"]
