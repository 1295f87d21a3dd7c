"""The `stamen` run tools send the operator's token on every Control call.

A TLS SuperLink with operator tokens serves in a background thread (the CLI runs its own
event loop); `ls` and `stop` without a token, or with a wrong one, fail with one error
line and exit code 2; the token from `--operator-token-file`, from the federation's
`operator-token-file` or from $STAMEN_OPERATOR_TOKEN is accepted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from stamen.auth.tokens import hash_token
from stamen.cli.app import stamen
from stamen.cli.federation import resolve_federation
from stamen.common.errors import ConfigError
from stamen.common.project import read_project
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.transport.grpc.guard import OPERATOR_TOKEN_ENV

TOKEN = "open-sesame"

pytestmark = [
    # Each command ends its event loop while its TLS connection is still closing (a
    # process exits right after): fine there, a ResourceWarning inside pytest.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def control(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Control address of a TLS SuperLink that requires operator tokens."""
    operators = tmp_path_factory.mktemp("operators") / "operators.txt"
    operators.write_text(f"ops:{hash_token(TOKEN)}\n")
    settings = SuperLinkSettings(
        certificates={
            "ca": certs_dir / "ca.crt",
            "cert": certs_dir / "server.pem",
            "key": certs_dir / "server.key",
        },
        auth_operator_tokens=operators,
        database=":memory:",
        fleet_api_address="127.0.0.1:0",
        serverappio_api_address="127.0.0.1:0",
        control_api_address="127.0.0.1:0",
        grace_period=0.2,
    )
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[Listening] = loop.create_future()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(settings, ready=ready, stop=stop),)
    )
    thread.start()
    try:
        listening = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, 10), loop).result(15)
        yield listening.control
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(stamen, list(args), env=env, catch_exceptions=False)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stamen: error: ")
    return lines[0]


@pytest.fixture
def no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (OPERATOR_TOKEN_ENV, "STAMEN_OPERATOR_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_token_env")
def test_without_or_with_a_wrong_token_control_is_refused(
    control: str, certs_dir: Path, tmp_path: Path
) -> None:
    where = ["--superlink", control, "--root-certificates", str(certs_dir / "ca.crt")]
    for command in (["ls"], ["stop", "1"], ["log", "1"]):
        missing = invoke(*command, *where)
        assert missing.exit_code == 2
        line = error_line(missing)
        assert "requires an operator token" in line
        assert "--operator-token-file" in line
        assert OPERATOR_TOKEN_ENV in line
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    for result in (
        invoke("ls", *where, "--operator-token-file", str(wrong)),
        invoke("ls", *where, env={OPERATOR_TOKEN_ENV: "not-the-token"}),
    ):
        assert result.exit_code == 2
        assert "the operator token is not on the SuperLink's list" in error_line(result)
    unreadable = invoke("ls", *where, "--operator-token-file", str(tmp_path / "missing"))
    assert unreadable.exit_code == 2
    assert "cannot read the operator token file" in error_line(unreadable)


@pytest.mark.usefixtures("no_token_env")
def test_the_token_is_sent_from_a_flag_the_federation_or_the_environment(
    control: str, certs_dir: Path, tmp_path: Path
) -> None:
    where = ["--superlink", control, "--root-certificates", str(certs_dir / "ca.crt")]
    token_file = tmp_path / "operator.token"
    token_file.write_text(TOKEN + "\n")
    by_flag = invoke("ls", *where, "--operator-token-file", str(token_file))
    assert by_flag.exit_code == 0, by_flag.output
    assert by_flag.stdout.startswith("run id")
    by_env = invoke("ls", *where, "--format", "json", env={OPERATOR_TOKEN_ENV: TOKEN})
    assert (by_env.exit_code, by_env.stdout.strip()) == (0, "[]")
    stopped = invoke("stop", "99", *where, env={OPERATOR_TOKEN_ENV: TOKEN})
    assert stopped.exit_code == 2
    assert "run 99" in error_line(stopped)  # past authentication: the run does not exist

    made = invoke("new", "app", "--dir", str(tmp_path))
    assert made.exit_code == 0, made.output
    app = tmp_path / "app"
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.stamen.federations.tls]\naddress = "{control}"\n'
        + f'root-certificates = "{certs_dir / "ca.crt"}"\n'
        + f'operator-token-file = "{token_file}"\n'
    )
    by_federation = invoke("ls", str(app), "tls", "--format", "json")
    assert (by_federation.exit_code, by_federation.stdout.strip()) == (0, "[]")


def test_a_token_over_an_insecure_federation_is_refused(tmp_path: Path) -> None:
    made = invoke("new", "app", "--dir", str(tmp_path))
    assert made.exit_code == 0, made.output
    app = tmp_path / "app"
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + '\n[tool.stamen.federations.open]\naddress = "127.0.0.1:9093"\ninsecure = true\n'
        + 'operator-token-file = "operator.token"\n'
    )
    with pytest.raises(ConfigError, match="an operator token needs TLS"):
        resolve_federation(read_project(app), "open")
    result = invoke("ls", "--superlink", "127.0.0.1:9093", "--insecure",
                    "--operator-token-file", "operator.token")  # fmt: skip
    assert result.exit_code == 2
    assert "an operator token needs TLS" in error_line(result)
