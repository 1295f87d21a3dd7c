"""`stamen.compat.install_flwr_alias` and `--flwr-compat`, in this process.

Every test leaves sys.meta_path, sys.modules and the environment as it found them.
The CLIs' runs with a Flower app are in tests/integration/test_flwr_compat.py.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stamen.common.loading import load_app
from stamen.compat import (
    FLWR_COMPAT_VARIABLE,
    FlwrInstalledError,
    enable_flwr_compat,
    flwr_alias_installed,
    install_flwr_alias,
)


@pytest.fixture(autouse=True)
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    finders = list(sys.meta_path)
    monkeypatch.delenv(FLWR_COMPAT_VARIABLE, raising=False)
    yield
    sys.meta_path[:] = finders
    for name in [n for n in sys.modules if n == "flwr" or n.startswith("flwr.")]:
        del sys.modules[name]
    os.environ.pop(FLWR_COMPAT_VARIABLE, None)


@pytest.fixture
def real_flwr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package named flwr, importable: stands for Flower installed here."""
    (tmp_path / "flwr").mkdir()
    (tmp_path / "flwr" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_flwr_modules_are_the_stamen_modules() -> None:
    install_flwr_alias()
    import flwr.app
    import flwr.common.typing
    import stamen.app
    import stamen.common.typing
    from flwr.server.strategy import FedAvg
    from flwr.serverapp import ServerApp
    from stamen.server.strategy import FedAvg as StamenFedAvg

    assert flwr.app is stamen.app
    assert flwr.common.typing is stamen.common.typing
    assert ServerApp.__module__ == "stamen.server.server_app"
    assert FedAvg is StamenFedAvg


def test_installing_twice_installs_once() -> None:
    install_flwr_alias()
    install_flwr_alias()
    assert sum(type(f).__name__ == "_FlwrFinder" for f in sys.meta_path) == 1


def test_a_flower_module_stamen_lacks_says_so() -> None:
    install_flwr_alias()
    # (stamen.cli exists since the stamen command: flwr.superexec has no Stamen twin)
    missing = r"'flwr\.superexec'.*'stamen\.superexec'.*does not provide"
    with pytest.raises(ModuleNotFoundError, match=missing):
        importlib.import_module("flwr.superexec")


def test_an_unsupported_flower_name_keeps_its_reason() -> None:
    install_flwr_alias()
    with pytest.raises(ImportError, match=r"not supported by Stamen: .*telemetry"):
        from flwr.common import event  # noqa: F401


def test_the_real_flwr_is_never_shadowed(real_flwr: Path) -> None:
    with pytest.raises(FlwrInstalledError, match="real flwr package is installed"):
        install_flwr_alias()
    assert not flwr_alias_installed()


def test_enable_sets_the_variable_that_app_loading_obeys(tmp_path: Path) -> None:
    (tmp_path / "flower_app.py").write_text(
        "from flwr.clientapp import ClientApp\napp = ClientApp()\n"
    )
    enable_flwr_compat()
    assert os.environ[FLWR_COMPAT_VARIABLE] == "1"
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_FlwrFinder"]
    # A process that inherited only the environment (a worker) installs it as it loads.
    app = load_app("flower_app:app", object, tmp_path)
    assert type(app).__name__ == "ClientApp"
    assert flwr_alias_installed()


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("stamen.simulation.cli", ["--server-app", "s:a", "--client-app", "c:a"]),
        ("stamen.supernode.cli", ["client:app", "--insecure"]),
        ("stamen.runner.cli", ["server:app", "--insecure"]),
    ],
)
def test_each_cli_refuses_flwr_compat_next_to_the_real_flwr(
    real_flwr: Path, module: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    main = importlib.import_module(module).main
    extra = ["--num-supernodes", "2"] if module.endswith("simulation.cli") else []
    try:
        with pytest.raises(SystemExit) as exited:
            main([*argv, *extra, "--flwr-compat"])
    finally:
        gc.unfreeze()  # stamen-simulation's main freezes the heap as the process ends
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "error: the real flwr package is installed" in err[0]
