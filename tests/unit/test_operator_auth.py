"""Operator credentials on a TLS SuperLink, in-process over real gRPC with TLS.

A TLS SuperLink refuses to start with Control and ServerAppIo open unless it is told so
(and then says so in a warning); with tokens, a caller without a token or with a wrong
one is refused on both APIs; a runner's launch token opens ServerAppIo only, and only
until it is revoked; the runners the launcher starts get their token in the environment
only. The `stamen` CLI sends the operator's token: tests/unit/test_stamen_cli_tokens.py.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from grpclib.client import Channel
from pydantic import ValidationError
from stamen.auth.tokens import LaunchTokens, hash_token
from stamen.common.errors import ConfigError, UnauthenticatedError
from stamen.runner import cli as runner_cli
from stamen.superlink import cli as superlink_cli
from stamen.superlink.auth import Credentials
from stamen.superlink.launcher import RunnerLauncher
from stamen.superlink.runfiles import RunFiles
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.transport.grpc import GrpcControlClient, GrpcServerAppIoClient, connect
from stamen.transport.grpc.guard import OPERATOR_TOKEN_ENV, operator_token, use_operator_token

TOKEN = "sesame"
REFUSED = "with TLS, Control and ServerAppIo require operator credentials"


def tls_settings(certs_dir: Path, **options: object) -> SuperLinkSettings:
    return SuperLinkSettings.model_validate(
        {
            "certificates": {
                "ca": certs_dir / "ca.crt",
                "cert": certs_dir / "server.pem",
                "key": certs_dir / "server.key",
            },
            "database": ":memory:",
            "fleet_api_address": "127.0.0.1:0",
            "serverappio_api_address": "127.0.0.1:0",
            "control_api_address": "127.0.0.1:0",
            "grace_period": 0.2,
            **options,
        }
    )


@asynccontextmanager
async def serving(
    settings: SuperLinkSettings, credentials: Credentials | None = None
) -> AsyncIterator[Listening]:
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready, stop=stop, credentials=credentials))
    try:
        await asyncio.wait([ready, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_tls_without_operator_credentials_does_not_start(certs_dir: Path) -> None:
    with pytest.raises(ValidationError, match=REFUSED):
        tls_settings(certs_dir)
    assert (
        tls_settings(certs_dir, allow_unauthenticated_operators=True).auth_operator_tokens is None
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--certificates", "ca", "cert", "key"), REFUSED),
        (
            ("--certificates", "ca", "cert", "key", "--allow-unauthenticated-operators",
             "--auth-operator-tokens", "ops.txt"),
            "--allow-unauthenticated-operators and --auth-operator-tokens exclude each other",
        ),
        (
            ("--insecure", "--allow-unauthenticated-operators"),
            "--allow-unauthenticated-operators goes with --certificates",
        ),
    ],
)  # fmt: skip
def test_the_cli_refuses_open_operator_apis_in_one_line(
    args: tuple[str, ...], expected: str
) -> None:
    result = CliRunner().invoke(superlink_cli.main, list(args))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("stamen-superlink: error: ")
    assert expected in line


async def test_the_opt_out_serves_openly_and_says_so(
    certs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = tls_settings(certs_dir, allow_unauthenticated_operators=True)
    async with serving(settings) as listening:
        channel = connect(listening.control, root_certificates=certs_dir / "ca.crt", insecure=False)
        try:
            assert await GrpcControlClient(channel, timeout=10).list_runs() == []
        finally:
            channel.close()
    [warning] = [r for r in caplog.records if "--allow-unauthenticated-operators" in r.message]
    assert warning.levelno == logging.WARNING
    assert "anyone who can reach them" in warning.message


async def test_operator_apis_refuse_missing_and_wrong_tokens(
    certs_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "operators.txt").write_text(f"ops:{hash_token(TOKEN)}\n")
    settings = tls_settings(certs_dir, auth_operator_tokens=tmp_path / "operators.txt")
    credentials = Credentials(settings)
    ca = certs_dir / "ca.crt"
    async with serving(settings, credentials) as listening:
        channels: list[Channel] = []

        def client(address: str, token: str | None) -> Channel:
            channel = connect(address, root_certificates=ca, insecure=False)
            channels.append(channel)
            if token is not None:
                use_operator_token(channel, token)
            return channel

        def serverappio(token: str | None) -> GrpcServerAppIoClient:
            return GrpcServerAppIoClient(client(listening.serverappio, token), timeout=10)

        def control(token: str | None) -> GrpcControlClient:
            return GrpcControlClient(client(listening.control, token), timeout=10)

        try:
            for token, reason in ((None, "requires an operator token"), ("guess", "not on")):
                with pytest.raises(UnauthenticatedError, match=reason):
                    await serverappio(token).create_run("s:app", "c:app", {})
                with pytest.raises(UnauthenticatedError, match=reason):
                    await serverappio(token).get_nodes(1)
                with pytest.raises(UnauthenticatedError, match=reason):
                    await control(token).list_runs()
                with pytest.raises(UnauthenticatedError, match=reason):
                    await control(token).stop_run(1)
            run_id = await serverappio(TOKEN).create_run("s:app", "c:app", {})
            assert [run.run_id for run in await control(TOKEN).list_runs()] == [run_id]

            # A runner's launch token: ServerAppIo, nothing else, until it is revoked.
            launch = credentials.launched.issue("runner of run 1")
            assert await serverappio(launch).get_nodes(run_id) == []
            with pytest.raises(UnauthenticatedError, match="not on"):
                await control(launch).list_runs()
            credentials.launched.revoke(launch)
            with pytest.raises(UnauthenticatedError, match="not on"):
                await serverappio(launch).get_nodes(run_id)
        finally:
            for channel in channels:
                channel.close()


PRINT_TOKEN = f"import os; print('token=' + os.environ.get({OPERATOR_TOKEN_ENV!r}, ''))"


@pytest.mark.parametrize("with_tokens", [True, False])
async def test_launched_runners_get_their_token_in_the_environment_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    with_tokens: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "the-superlink-s-own")  # never passed on
    files = RunFiles(tmp_path / "runs")
    tokens = LaunchTokens() if with_tokens else None
    launcher = RunnerLauncher(
        files, "127.0.0.1:9091", root_certificates=tmp_path / "ca.crt", tokens=tokens
    )
    real_command = launcher.command(7, tmp_path)
    monkeypatch.setattr(launcher, "command", lambda *_: [sys.executable, "-c", PRINT_TOKEN])
    exits: list[tuple[int, str | None]] = []

    def on_exit(run_id: int, code: int, last_error: str) -> None:
        log = (files.run_folder(run_id) / "log.txt").read_text()
        token = log.strip().removeprefix("token=")
        valid = None if tokens is None else tokens.name_of(f"Bearer {token}")
        exits.append((code, valid))
        seen.append(token)

    seen: list[str] = []
    async with launcher:
        launcher.launch(7, tmp_path, on_exit)
    assert exits == [(0, "runner of run 7" if with_tokens else None)]
    [token] = seen
    if with_tokens:
        assert len(token) >= 40
        assert tokens is not None
        assert tokens.name_of(f"Bearer {token}") is None  # revoked once it exited
        assert token not in " ".join(real_command)
        assert token not in caplog.text
    else:
        assert token == ""
    assert OPERATOR_TOKEN_ENV not in " ".join(real_command)


def test_a_client_token_comes_from_its_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(OPERATOR_TOKEN_ENV, raising=False)
    assert operator_token(None) is None
    (tmp_path / "token").write_text("\nfrom-file\n")
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "from-env")
    assert operator_token(tmp_path / "token") == "from-file"
    assert operator_token(None) == "from-env"
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "two words")
    with pytest.raises(ConfigError, match=r"\$STAMEN_OPERATOR_TOKEN holds no operator token"):
        operator_token(None)


def test_the_runner_sends_no_token_file_in_the_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_cli, "setup_logging", lambda *args, **kwargs: None)
    (tmp_path / "operator.token").write_text("a-token\n")
    result = CliRunner().invoke(
        runner_cli.main,
        ["x:app", "--insecure", "--operator-token-file", str(tmp_path / "operator.token")],
    )
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "--operator-token-file needs TLS" in line
