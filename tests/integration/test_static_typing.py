"""mypy sees the installed package as a user's app does, from outside the repository.

The editable install is a static path (shared/, whose stamen/<service> entries link to
services/<service>), not an import hook: a hook works only at run time, and mypy would
report `Cannot find implementation or library stub for module named "stamen.client"`
and type everything it imports as Any.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = """
from stamen.client import ClientApp
from stamen.simulation import run_simulation
from stamen.superlink import SuperLink

app = ClientApp()
reveal_type(run_simulation("server:app", app, 2))
reveal_type(SuperLink)
"""


def test_mypy_resolves_the_services_from_an_app_outside_the_repo(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         "app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Revealed type is "stamen.server.history.History"' in done.stdout, done.stdout
    assert "-> stamen.superlink.superlink.SuperLink" in done.stdout, done.stdout


def test_the_service_links_point_at_the_services() -> None:
    root = Path(__file__).resolve().parents[2]
    for service in ("superlink", "supernode", "runner", "simulation"):
        link = root / "shared" / "stamen" / service
        assert link.is_symlink(), f"{link} should link to services/{service}"
        assert link.resolve() == (root / "services" / service).resolve()
