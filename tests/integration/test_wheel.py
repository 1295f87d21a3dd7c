"""The built wheel holds every subpackage and each CLI starts from it.

setuptools' package-dir mapping puts services/<name> under stamen.<name>; a package
missing from pyproject.toml's list would only show up in a wheel, never in an editable
install, so this builds one and runs it in a fresh virtualenv.
"""

from __future__ import annotations

import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIS = ["stamen-superlink", "stamen-supernode", "stamen-serverapp", "stamen-simulation", "stamen"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _source_packages() -> set[str]:
    found = set()
    for base, prefix in [(ROOT / "shared/stamen", "stamen")] + [
        (ROOT / "services" / name, f"stamen.{name}")
        for name in ("superlink", "supernode", "runner", "simulation")
    ]:
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((prefix, *rel)))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(ROOT)],
        check=True, timeout=300,
    )  # fmt: skip
    (path,) = out.glob("stamen-*.whl")
    return path


def test_wheel_contains_every_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    packed = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("__init__.py")}
    assert _source_packages() <= packed, sorted(_source_packages() - packed)
    assert "stamen/py.typed" in names
    assert "stamen/superlink/dashboard.html" in names  # the dashboard's page, offline


def test_each_cli_runs_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # Dependencies come from the test's own environment (no network); stamen itself only
    # from the wheel: the .pth names site-packages without running its editable hooks.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    where = subprocess.run(
        [str(python), "-c", "import stamen.superlink, stamen; print(stamen.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert str(env_dir) in where
    for cli in CLIS:
        result = subprocess.run(
            [str(env_dir / "bin" / cli), "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (cli, result.stderr)
        assert "Usage:" in result.stdout
    # The app templates are package data: `stamen new` works from the wheel.
    made = subprocess.run(
        [str(env_dir / "bin" / "stamen"), "new", "wheelapp", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "wheelapp" / "wheelapp" / "task.py").is_file()
