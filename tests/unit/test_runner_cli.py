"""`stamen-serverapp`: bad input exits 2 with one line; an absent SuperLink exits 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from stamen import __version__
from stamen.runner import cli

SERVER_APP = "from stamen.server import ServerApp\napp = ServerApp()\nnot_an_app = 3\n"


@pytest.fixture(autouse=True)
def _no_log_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI configures the root logger; the test process keeps its own."""
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "srvapp_cli_app.py").write_text(SERVER_APP)
    return tmp_path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stamen-serverapp: error: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_neither_insecure_nor_a_ca_is_bad_input(app_dir: Path) -> None:
    result = invoke("srvapp_cli_app:app", "--dir", str(app_dir))
    assert result.exit_code == 2
    assert "--root-certificates CA" in error_line(result)


def test_insecure_and_a_ca_together_are_bad_input(app_dir: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    result = invoke("srvapp_cli_app:app", "--insecure", "--root-certificates", str(ca))
    assert result.exit_code == 2
    assert "exclude each other" in error_line(result)


def test_a_missing_ca_is_bad_input(app_dir: Path) -> None:
    missing = app_dir / "nope.crt"
    result = invoke("srvapp_cli_app:app", "--root-certificates", str(missing))
    assert result.exit_code == 2
    assert f"cannot read certificate file {missing}" in error_line(result)


def test_a_ca_that_is_not_pem_is_bad_input(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    result = invoke("srvapp_cli_app:app", "--root-certificates", str(ca))
    assert result.exit_code == 2
    assert "is not a PEM certificate" in error_line(result)


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("srvapp_cli_app", "expected 'module:attribute'"),
        ("srvapp_cli_missing:app", "no module named 'srvapp_cli_missing'"),
        ("srvapp_cli_app:nothing", "has no attribute 'nothing'"),
        ("srvapp_cli_app:not_an_app", "expected ServerApp"),
    ],
)
def test_a_bad_app_reference_is_bad_input(app_dir: Path, reference: str, why: str) -> None:
    result = invoke(reference, "--insecure", "--dir", str(app_dir))
    assert result.exit_code == 2
    assert why in error_line(result)


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--run-config", "rounds", "not key=value"),
        ("--server", "localhost", "not an address of the form HOST:PORT"),
        ("--max-wait-time", "0", "--max-wait-time: Input should be greater than 0"),
        ("--round-timeout", "-1", "--round-timeout: Input should be greater than 0"),
        ("--node-wait-timeout", "-1", "--node-wait-timeout: Input should be greater than"),
        ("--fleet-address", "9092", "--fleet-address: '9092' is not an address"),
        (
            "--save-final-arrays",
            "/nonexistent/folder/model.npz",
            "--save-final-arrays: cannot write '/nonexistent/folder/model.npz': "
            "No such file or directory",
        ),
        ("--save-final-arrays", "/", "--save-final-arrays: cannot write '/': it is a directory"),
    ],
)
def test_bad_flag_values_are_bad_input(app_dir: Path, flag: str, value: str, why: str) -> None:
    result = invoke("srvapp_cli_app:app", "--insecure", "--dir", str(app_dir), flag, value)
    assert result.exit_code == 2
    assert why in error_line(result)


def test_flags_come_from_the_environment_too(app_dir: Path) -> None:
    env = {"STAMEN_INSECURE": "1", "STAMEN_DIR": str(app_dir), "STAMEN_RUN_CONFIG": "x"}
    result = invoke("srvapp_cli_app:app", env=env)
    assert result.exit_code == 2
    assert "config entry 'x'" in error_line(result)


def test_an_unreachable_superlink_ends_with_exit_1(app_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = invoke(
        "srvapp_cli_app:app",
        "--insecure",
        "--dir",
        str(app_dir),
        "--superlink",
        address,
        "--max-wait-time",
        "0.3",
    )
    assert result.exit_code == 1
    assert "gave up reaching the SuperLink after" in error_line(result)
    assert "connection refused" in error_line(result)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_run_id_and_resume_exclude_each_other(app_dir: Path) -> None:
    result = invoke(
        "srvapp_cli_app:app", "--insecure", "--dir", str(app_dir), "--run-id", "3", "--resume", "3"
    )
    assert result.exit_code == 2
    assert "--run-id and --resume exclude each other" in error_line(result)


PYPROJECT = """
[tool.stamen.app.components]
serverapp = "srvapp_cli_app:app"

[tool.stamen.app.config]
num-server-rounds = 3
"""


def test_without_app_the_pyproject_names_it(app_dir: Path) -> None:
    (app_dir / "pyproject.toml").write_text(PYPROJECT)
    address = f"127.0.0.1:{free_port()}"
    result = invoke(
        "--insecure", "--dir", str(app_dir), "--superlink", address, "--max-wait-time", "0.3"
    )
    assert result.exit_code == 1  # it loaded the app and went on to connect
    assert "gave up reaching the SuperLink" in error_line(result)


def test_without_app_or_pyproject_says_what_to_pass(app_dir: Path) -> None:
    result = invoke("--insecure", "--dir", str(app_dir))
    assert result.exit_code == 2
    assert "pass APP (module:attribute)" in error_line(result)


def test_a_run_config_key_the_app_lacks_is_bad_input(app_dir: Path) -> None:
    (app_dir / "pyproject.toml").write_text(PYPROJECT)
    result = invoke("--insecure", "--dir", str(app_dir), "--run-config", "num-rounds=1")
    assert result.exit_code == 2
    assert "no key 'num-rounds'; did you mean 'num-server-rounds'?" in error_line(result)
