"""What a simulation pays before it trains: imports kept lazy, and the forkserver preload."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import stamen.common
from click.testing import CliRunner
from stamen.common.context import Context
from stamen.simulation.cli import simulation
from stamen.workers import preload, warm
from stamen.workers.launcher import APP_VARIABLE

pytestmark = pytest.mark.timeout(30)


def test_importing_stamen_and_its_errors_imports_neither_numpy_nor_metadata() -> None:
    code = (
        "import sys, stamen, stamen.common.errors\n"
        "print([m for m in ('numpy', 'importlib.metadata') if m in sys.modules])\n"
        "print(stamen.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )

    loaded, version = done.stdout.splitlines()
    assert loaded == "[]"
    assert version == importlib.metadata.version("stamen")


def test_the_common_packages_names_load_on_first_use() -> None:
    assert stamen.common.Context is Context
    for name in stamen.common.__all__:
        getattr(stamen.common, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        stamen.common.nothing_here  # noqa: B018


def test_the_cli_looks_its_version_up_when_asked() -> None:
    result = CliRunner().invoke(simulation, ["--version"])

    assert result.exit_code == 0
    assert result.output == f"stamen-simulation, version {importlib.metadata.version('stamen')}\n"


def test_the_forkserver_preload_imports_what_the_app_would_import_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preload_app.py").write_text(
        "import json\nfrom stamen.client import ClientApp\napp = ClientApp()\n"
    )
    monkeypatch.setenv(APP_VARIABLE, json.dumps(["preload_app:app", str(tmp_path)]))
    lazy = {"json": "json.tool", "library_not_imported": "library_not_imported.lazy"}
    monkeypatch.setattr(warm, "LAZY_IMPORTS", lazy)
    frozen: list[bool] = []
    monkeypatch.setattr(preload.gc, "freeze", lambda: frozen.append(True))
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)

    preload._preload()

    assert "json.tool" in sys.modules  # the app imported json: its lazy part comes too
    assert "library_not_imported.lazy" not in sys.modules
    assert frozen == [True]  # what the workers inherit is kept out of their collections


class _Pool:
    """What prefork_warm asks of a WorkerPool: whether it may fork, and the fork."""

    def __init__(self, blocker: str | None) -> None:
        self.blocker = blocker
        self.preforked = False

    def fork_blocker(self) -> str | None:
        return self.blocker

    def prefork(self) -> bool:
        self.preforked = True
        return self.blocker is None


@pytest.mark.parametrize("blocker", [None, "other threads run in this process"])
def test_workers_forked_from_this_process_find_the_lazy_imports_done(
    blocker: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stamen.simulation.backend import prefork_warm

    monkeypatch.setattr(warm, "LAZY_IMPORTS", {"json": "json.tool"})
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    pool = _Pool(blocker)

    forked = prefork_warm(pool)  # type: ignore[arg-type]  # the two methods it calls

    assert pool.preforked  # asked either way: the pool logs why it does not fork
    assert forked is (blocker is None)
    # Imported only for workers that inherit it: else a worker pays it where it needs it.
    assert ("json.tool" in sys.modules) is (blocker is None)
