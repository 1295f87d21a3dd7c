"""load_app: success paths and one clear line for every way a reference can fail."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from stamen.client import ClientApp
from stamen.common import loading
from stamen.common.errors import AppLoadError
from stamen.common.loading import load_app

APP_MODULE = """
from stamen.client import ClientApp

app = ClientApp()
other = ClientApp()

class Holder:
    inner = app

number = 42
"""


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts and ends with the interpreter's own sys.path and sys.modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(loading, "_app_directories", [])
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def load_error(
    reference: str, directory: Path | None, expected: type | tuple[type, ...] = ClientApp
) -> str:
    with pytest.raises(AppLoadError) as info:
        load_app(reference, expected, directory)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot load app {reference!r}: ")
    return info.value.reason


def test_loads_an_attribute(tmp_path: Path) -> None:
    write(tmp_path, "client.py", APP_MODULE)
    app = load_app("client:app", ClientApp, tmp_path)
    assert isinstance(app, ClientApp)
    assert sys.path[0] == str(tmp_path.resolve())
    assert load_app("client:Holder.inner", ClientApp, str(tmp_path)) is app


def test_loads_from_a_package_with_a_tuple_of_types(tmp_path: Path) -> None:
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/apps.py", APP_MODULE)
    assert load_app("pkg.apps:number", (ClientApp, int), tmp_path) == 42


def test_same_module_name_in_two_directories(tmp_path: Path) -> None:
    for name, value in (("one", 1), ("two", 2)):
        write(tmp_path / name, "helper.py", f"VALUE = {value}")
        write(tmp_path / name, "client.py", "from helper import VALUE\nvalue = VALUE\n")
    assert load_app("client:value", int, tmp_path / "one") == 1
    assert load_app("client:value", int, tmp_path / "two") == 2
    assert load_app("client:value", int, tmp_path / "one") == 1


@pytest.mark.parametrize(
    "reference", ["client", ":app", "client:", "client:app:x", "cli ent:app", "client:a-b", ""]
)
def test_malformed_reference(reference: str, tmp_path: Path) -> None:
    assert "expected 'module:attribute'" in load_error(reference, tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    reason = load_error("client:app", tmp_path / "nowhere")
    assert reason == f"directory {str(tmp_path / 'nowhere')!r} does not exist"
    write(tmp_path, "file.txt", "")
    assert "is not a directory" in load_error("client:app", tmp_path / "file.txt")


def test_module_not_found(tmp_path: Path) -> None:
    assert load_error("no_such_module_here:app", tmp_path) == (
        f"no module named 'no_such_module_here' (looked in {str(tmp_path)!r} and on "
        "sys.path; pass --dir with the folder that holds it)"
    )
    write(tmp_path, "pkg/__init__.py", "")
    assert load_error("pkg.absent:app", tmp_path).startswith("no module named 'pkg.absent' (")


def test_module_with_a_missing_dependency(tmp_path: Path) -> None:
    path = write(tmp_path, "client.py", "import os\nimport not_installed_dependency\n")
    reason = load_error("client:app", tmp_path)
    assert reason.startswith(
        "module 'client' does not import: ModuleNotFoundError: "
        "No module named 'not_installed_dependency'"
    )
    assert f"({path}, line 2)" in reason


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "client.py", "app = (\n")
    reason = load_error("client:app", tmp_path)
    assert reason.startswith("module 'client' has a syntax error: ")
    assert f"({path}, line 1)" in reason


@pytest.mark.parametrize(
    ("source", "raised"),
    [
        ("x = 1\nraise RuntimeError('no GPU')\n", "RuntimeError: no GPU"),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
        ("{}['missing']\n", "KeyError: 'missing'"),
    ],
)
def test_module_that_raises_at_import(source: str, raised: str, tmp_path: Path) -> None:
    path = write(tmp_path, "client.py", source)
    reason = load_error("client:app", tmp_path)
    assert reason.startswith(f"importing module 'client' raised {raised}")
    assert str(path) in reason


def test_missing_attribute_names_candidates(tmp_path: Path) -> None:
    write(tmp_path, "client.py", APP_MODULE)
    assert load_error("client:ap", tmp_path) == (
        "module 'client' has no attribute 'ap'; its ClientApp objects: app, other"
    )
    assert load_error("client:Holder.missing", tmp_path).startswith(
        "module 'client' has no attribute 'Holder.missing'"
    )


def test_attribute_of_the_wrong_type(tmp_path: Path) -> None:
    write(tmp_path, "client.py", APP_MODULE)
    assert load_error("client:number", tmp_path) == (
        "'number' in module 'client' is of type int, expected ClientApp"
    )
    assert load_error("client:app", tmp_path, expected=(int, str)).endswith(
        "is of type ClientApp, expected int or str"
    )


def test_without_directory_uses_sys_path() -> None:
    assert load_app("stamen.client:ClientApp", type) is ClientApp
