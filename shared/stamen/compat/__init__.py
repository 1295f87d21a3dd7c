"""Run a Flower app with no edit: `import flwr...` resolves to the `stamen` modules.

    from stamen.compat import install_flwr_alias
    install_flwr_alias()
    import flwr.app                 # is stamen.app
    from flwr.serverapp import ServerApp

`--flwr-compat` on stamen-simulation, stamen-supernode and stamen-serverapp calls
`enable_flwr_compat()`, which also sets STAMEN_FLWR_COMPAT=1: every process that loads
an app (`stamen.common.loading.load_app`, in the workers too) then installs the alias
before importing it. Where the real `flwr` is importable, the alias refuses to shadow it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

from stamen.common.errors import UserInputError

__all__ = [
    "FLWR_COMPAT_VARIABLE",
    "FlwrInstalledError",
    "enable_flwr_compat",
    "flwr_alias_installed",
    "install_flwr_alias",
]

FLWR_COMPAT_VARIABLE = "STAMEN_FLWR_COMPAT"
"""Set to "1" in the environment: processes that load an app alias `flwr` first."""


class FlwrInstalledError(UserInputError):
    """The real Flower is importable here, so aliasing `flwr` would shadow it."""

    def __init__(self, location: str) -> None:
        super().__init__(
            f"the real flwr package is installed in this environment ({location}); "
            "--flwr-compat would shadow it: uninstall flwr here, or rename the app's "
            "imports from flwr to stamen"
        )
        self.location = location


class _FlwrFinder(importlib.abc.MetaPathFinder):
    """Finds `flwr` and `flwr.X` as the already-importable `stamen` and `stamen.X`."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "flwr" and not fullname.startswith("flwr."):
            return None
        stamen_name = "stamen" + fullname[len("flwr") :]
        if importlib.util.find_spec(stamen_name) is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: with --flwr-compat it is {stamen_name!r}, "
                "which Stamen does not provide (see README, Coming from Flower)",
                name=fullname,
            )
        return importlib.util.spec_from_loader(fullname, _AliasLoader(stamen_name))


class _AliasLoader(importlib.abc.Loader):
    """Hands out the `stamen` module itself, so `flwr.app is stamen.app`."""

    def __init__(self, stamen_name: str) -> None:
        self.stamen_name = stamen_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.stamen_name)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the stamen module ran when it was imported."""


def flwr_alias_installed() -> bool:
    return any(isinstance(finder, _FlwrFinder) for finder in sys.meta_path)


def install_flwr_alias() -> None:
    """Make `import flwr...` resolve to the `stamen` modules in this process (idempotent).

    Raises FlwrInstalledError where the real flwr is importable (or already imported).
    """
    if flwr_alias_installed():
        return
    real = sys.modules.get("flwr")
    spec = importlib.util.find_spec("flwr") if real is None else real.__spec__
    if real is not None or spec is not None:
        origin = (spec.origin if spec is not None else None) or "already imported"
        raise FlwrInstalledError(origin)
    sys.meta_path.insert(0, _FlwrFinder())


def enable_flwr_compat() -> None:
    """`install_flwr_alias()` here, and in every process started from here that loads an
    app (the environment carries STAMEN_FLWR_COMPAT=1 to them)."""
    install_flwr_alias()
    os.environ[FLWR_COMPAT_VARIABLE] = "1"
