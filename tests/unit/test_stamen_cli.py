"""`stamen` on bad input: one line `stamen: error: ...` and exit code 2; `new` and `build`.

The flows that start processes (a simulation, a SuperLink) are in
tests/integration/test_stamen_cli.py.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from stamen.cli.app import stamen
from stamen.cli.federation import resolve_federation
from stamen.cli.run import simulation_command
from stamen.common.errors import ConfigError
from stamen.common.project import read_project


def invoke(*args: str) -> Result:
    return CliRunner().invoke(stamen, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stamen: error: ")
    return lines[0].removeprefix("stamen: error: ")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    result = invoke("new", "my-app", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "my-app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("template", ["numpy", "pytorch", "sklearn"])
def test_new_makes_an_app_with_components_config_and_federations(
    tmp_path: Path, template: str
) -> None:
    result = invoke("new", "demo", "--template", template, "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "demo"
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    app = pyproject["tool"]["stamen"]["app"]
    assert app["components"] == {
        "serverapp": "demo.server_app:app",
        "clientapp": "demo.client_app:app",
    }
    assert app["config"]["num-server-rounds"] == 3
    assert pyproject["tool"]["stamen"]["federations"]["default"] == "local-simulation"
    for module in ("client_app", "server_app", "task"):
        compile((root / "demo" / f"{module}.py").read_text(), module, "exec")
    assert "__PACKAGE__" not in (root / "demo" / "server_app.py").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "1app"], "NAME: '1app' is not an app name"),
        (["new", "class"], "NAME: 'class' is a Python keyword"),
        (["new", "x", "--template", "jax"], "Invalid value for '--template'"),
    ],
)
def test_new_refuses_bad_names(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke(*args, "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert message in (error_line(result) if result.stderr.startswith("stamen") else result.output)


def test_new_does_not_overwrite(app: Path) -> None:
    result = invoke("new", "my-app", "--dir", str(app.parent))
    assert result.exit_code == 2
    assert "exists already" in error_line(result)


def test_build_writes_a_bundle_named_by_its_hash(app: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = json.loads(invoke("build", str(app), "-o", str(out), "--format", "json").output)
    second = json.loads(invoke("build", str(app), "-o", str(out), "--format", "json").output)
    assert first == second
    assert Path(first["path"]).name == f"my-app-1.0.0.{first['sha256'][:8]}.bundle"
    assert "my_app/client_app.py" in first["files"]


def test_build_over_max_bundle_size_says_so(app: Path) -> None:
    (app / "weights.bin").write_bytes(os.urandom(1 << 20))
    result = invoke("build", str(app), "--max-bundle-size", "0.5")
    assert result.exit_code == 2
    assert "MiB, over the 0.5 MiB limit: leave data and weights out" in error_line(result)
    assert invoke("build", str(app), "--max-bundle-size", "2").exit_code == 0


def test_build_of_a_folder_without_an_app(tmp_path: Path) -> None:
    result = invoke("build", str(tmp_path))
    assert result.exit_code == 2
    assert "has no pyproject.toml: it is not an app folder" in error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-config", "num-server-round=1"], "did you mean 'num-server-rounds'?"),
        (["--run-config", "lr=fast"], "lr='fast' is not a number"),
        (["--run-config", "a=1, b=2"], "separate pairs with spaces"),
        (["nowhere"], "no federation 'nowhere' in [tool.stamen.federations]"),
        (["local-simulatoin"], "did you mean 'local-simulation'?"),
    ],
)
def test_run_refuses_bad_input_before_running(app: Path, args: list[str], message: str) -> None:
    result = invoke("run", str(app), *args)
    assert result.exit_code == 2
    assert message in error_line(result)


def test_run_without_an_app_folder(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert error_line(result).startswith("--dir: ")
    assert error_line(result).endswith("is not a directory")


def test_federation_tables_are_checked(app: Path) -> None:
    pyproject = app / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text + "\n[tool.stamen.federations.broken]\nroot-certificates = 'x'\n")
    with pytest.raises(ConfigError, match=r"no address .* and no options\.num-supernodes"):
        resolve_federation(read_project(app), "broken")
    pyproject.write_text(text.replace('default = "local-simulation"\n', ""))
    with pytest.raises(ConfigError, match=r"name a FEDERATION: .* sets no default"):
        resolve_federation(read_project(app), None)
    pyproject.write_text(
        text.replace("insecure = true", 'root-certificates = "ca.crt"\ninsecure = true')
    )
    with pytest.raises(ConfigError, match="give exactly one of root-certificates"):
        resolve_federation(read_project(app), "local-deployment")


def test_a_simulation_federation_becomes_a_simulation_command(app: Path) -> None:
    federation = resolve_federation(read_project(app), None)
    command = simulation_command(app, federation, "num-server-rounds=1")
    assert command[-6:] == [
        "--dir", str(app), "--num-supernodes", "4", "--run-config", "num-server-rounds=1"
    ]  # fmt: skip


def test_run_tools_refuse_a_simulation_federation(app: Path) -> None:
    result = invoke("ls", str(app))
    assert result.exit_code == 2
    assert "is a local simulation: it keeps no runs" in error_line(result)


def test_tls_flags_go_with_superlink(app: Path) -> None:
    result = invoke("ls", str(app), "--insecure")
    assert result.exit_code == 2
    assert "go with --superlink HOST:PORT" in error_line(result)


def test_a_malformed_superlink_address(tmp_path: Path) -> None:
    result = invoke("ls", "--superlink", "nowhere", "--insecure")
    assert result.exit_code == 2
    assert "'nowhere' is not an address of the form HOST:PORT" in error_line(result)


def test_an_unreachable_superlink_exits_1(tmp_path: Path) -> None:
    result = invoke("ls", "--superlink", f"127.0.0.1:{free_port()}", "--insecure")
    assert result.exit_code == 1
    assert "connection refused" in error_line(result)
