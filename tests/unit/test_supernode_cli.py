"""`stamen-supernode` on bad input: exit code 2 and one line that says what to fix."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from stamen.supernode.cli import main
from stamen.supernode.settings import SuperNodeSettings

APP = """
from stamen.client import ClientApp

app = ClientApp()
"""


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI sets up the root logger; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "client.py").write_text(APP)
    return tmp_path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err.strip().splitlines()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "pass exactly one of --root-certificates CA (TLS) and --insecure"),
        (["--insecure", "--root-certificates", "ca.crt"], "pass exactly one of"),
        (["--insecure", "--node-config", "partition-id"], "--node-config: config entry"),
        (["--insecure", "--node-config", "a=1 a=2"], "given twice"),
        (["--insecure", "--server", "localhost"], "--server: 'localhost' is not an address"),
        (["--insecure", "--isolation", "fork"], "--isolation: Input should be 'process'"),
        (["--insecure", "--max-retries", "-1"], "--max-retries: Input should be greater"),
        (["--insecure", "--dir", "/no/such/dir"], "--dir: '/no/such/dir' is not a directory"),
        (["--insecure", "--max-retries", "many"], "'many' is not a valid integer"),
        (["--insecure", "--no-such-flag"], "No such option '--no-such-flag'"),
        (["--insecure", "--metrics-address", "here"], "--metrics-address: 'here' is not"),
        (["--insecure", "--log-format", "xml"], "'xml' is not one of 'text', 'json'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    args: list[str], expected: str, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_cli(["client:app", "--dir", str(app_dir), *args], capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("stamen-supernode: error: ")
    assert expected in lines[0]


def test_a_malformed_app_reference_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_cli(["client", "--insecure"], capsys)
    assert code == 2
    assert lines == [
        "stamen-supernode: error: APP: 'client' is not a 'module:attribute' reference "
        "(like client:app)"
    ]


def test_an_app_that_does_not_import_exits_2_before_serving(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["client:nope", "--insecure", "--dir", str(app_dir), "--isolation", "thread"]
    code, lines = run_cli(args, capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert "cannot load app 'client:nope': module 'client' has no attribute 'nope'" in lines[0]


def test_an_unreadable_ca_file_exits_2(
    app_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing-ca.crt"
    code, lines = run_cli(
        ["client:app", "--dir", str(app_dir), "--root-certificates", str(missing)], capsys
    )
    assert code == 2
    assert len(lines) == 1, lines
    assert f"cannot read certificate file {missing}" in lines[0]


def test_giving_up_on_an_unreachable_superlink_exits_1(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "client:app",
        "--dir",
        str(app_dir),
        "--insecure",
        "--isolation",
        "thread",
        "--server",
        f"127.0.0.1:{free_port()}",
        "--max-retries",
        "0",
        "--log-level",
        "ERROR",
    ]
    code, lines = run_cli(args, capsys)
    assert code == 1
    assert lines[-1].startswith(
        "stamen-supernode: error: gave up reaching the SuperLink after 0 retries"
    )


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli(["--version"], capsys)
    assert code == 0
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--server", "--superlink", "--root-certificates", "--insecure", "--node-config"):
        assert flag in help_text


def test_settings_come_from_stamen_environment_variables(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAMEN_INSECURE", "1")
    monkeypatch.setenv("STAMEN_NODE_CONFIG", "partition-id")
    code, lines = run_cli(["client:app", "--dir", str(app_dir)], capsys)
    assert code == 2
    assert "--node-config" in lines[0]


def test_settings_parse_node_config_and_accept_one_way_to_connect(app_dir: Path) -> None:
    settings = SuperNodeSettings(
        app="client:app",
        insecure=True,
        node_config="partition-id=0 num-partitions=10 name='a b'",  # type: ignore[arg-type]
        directory=app_dir,
        log_level="debug",  # type: ignore[arg-type]
    )
    assert settings.node_config == {"partition-id": 0, "num-partitions": 10, "name": "a b"}
    assert settings.log_level == "DEBUG"


def test_without_app_the_pyproject_names_it(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (app_dir / "pyproject.toml").write_text('[tool.flwr.app.components]\nclientapp = "client"\n')
    code, lines = run_cli(["--insecure", "--dir", str(app_dir)], capsys)
    assert code == 2  # the pyproject's (malformed) reference was the one checked
    assert lines == [
        "stamen-supernode: error: APP: 'client' is not a 'module:attribute' reference "
        "(like client:app)"
    ]


def test_without_any_app_thread_isolation_is_refused(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No APP and no pyproject: the node serves the runs' bundles, in worker processes.
    code, lines = run_cli(["--insecure", "--dir", str(app_dir), "--isolation", "thread"], capsys)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("stamen-supernode: error: --isolation thread needs an APP")
