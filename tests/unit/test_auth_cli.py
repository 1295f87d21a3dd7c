"""The authentication flags of the three CLIs: each mistake is one line and exit code 2,
and serve() builds what the flags ask for (the log says what protects what)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from stamen.auth.keys import PrivateKey, generate_key, public_key_line, write_key_pair
from stamen.auth.signing import RequestSigner
from stamen.auth.tokens import hash_token
from stamen.common.errors import InvalidMessageError, UnauthenticatedError
from stamen.runner import cli as runner_cli
from stamen.superlink import cli as superlink_cli
from stamen.superlink.auth import Credentials, NodeKeyRegistry
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.supernode import cli as supernode_cli
from stamen.supernode.cli import main as supernode_main
from stamen.transport.grpc import (
    GrpcControlClient,
    GrpcFleetClient,
    GrpcNodeKeysClient,
    connect,
)
from stamen.transport.grpc.guard import sign_requests, use_operator_token


def superlink(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(superlink_cli.main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--insecure", "--enable-supernode-auth"), "go together: pass both"),
        (("--insecure", "--auth-list-public-keys", "k.csv"), "go together: pass both"),
        (("--insecure", "--auth-operator-tokens", "t.txt"), "tokens would travel in the clear"),
    ],
)
def test_superlink_auth_flags_that_do_not_fit_are_one_line(
    args: tuple[str, ...], expected: str
) -> None:
    code, output = superlink(*args)
    assert code == 2
    assert output.count("\n") == 1
    assert expected in output


def test_superlink_unreadable_key_lists_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(superlink_cli, "setup_logging", lambda *args, **kwargs: None)
    listing = tmp_path / "keys.csv"
    listing.write_text("not a key\n")
    code, output = superlink(
        "--insecure", "--database", ":memory:", "--fleet-api-address", "127.0.0.1:0",
        "--serverappio-api-address", "127.0.0.1:0", "--control-api-address", "127.0.0.1:0",
        "--enable-supernode-auth", "--auth-list-public-keys", str(listing),
    )  # fmt: skip
    assert code == 2
    assert f"{listing}, line 1: not an OpenSSH public key" in output


def test_supernode_with_an_unusable_key_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supernode_cli, "setup_logging", lambda *args, **kwargs: None)
    junk = tmp_path / "node.key"
    junk.write_text("junk")
    with pytest.raises(SystemExit) as exited:
        supernode_main(["client:app", "--insecure", "--auth-supernode-private-key", str(junk)])
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{junk} is not an unencrypted PEM or OpenSSH private key" in line


def test_runner_with_a_missing_token_file_exits_2_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_cli, "setup_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(
        runner_cli.main,
        ["x:app", "--insecure", "--operator-token-file", str(tmp_path / "missing")],
    )
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "cannot read the operator token file" in line


async def test_serve_with_node_and_operator_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, certs_dir: Path
) -> None:
    node_key = generate_key()
    write_key_pair(node_key, tmp_path / "node")
    (tmp_path / "keys.csv").write_text(public_key_line(node_key.public_key()) + "\n")
    (tmp_path / "operators.txt").write_text(f"ops:{hash_token('sesame')}\n")
    settings = SuperLinkSettings(
        certificates={
            "ca": certs_dir / "ca.crt",
            "cert": certs_dir / "server.pem",
            "key": certs_dir / "server.key",
        },
        database=str(tmp_path / "state.db"),
        fleet_api_address="127.0.0.1:0",
        serverappio_api_address="127.0.0.1:0",
        control_api_address="127.0.0.1:0",
        enable_supernode_auth=True,
        auth_list_public_keys=tmp_path / "keys.csv",
        auth_operator_tokens=tmp_path / "operators.txt",
    )
    caplog.set_level(logging.INFO)
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    ca = certs_dir / "ca.crt"
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(serve(settings, ready=ready, stop=stop))
        async with asyncio.timeout(10):
            listening = await ready
        channels = [connect(listening.fleet, root_certificates=ca, insecure=False)]
        try:
            sign_requests(channels[0], RequestSigner(node_key))
            node = GrpcFleetClient(channels[0], timeout=10)
            node_id = (await node.register_node({})).node_id
            assert await node.pull_messages(node_id, 0) == []
            channels.append(connect(listening.control, root_certificates=ca, insecure=False))
            with pytest.raises(UnauthenticatedError, match="operator token"):
                await GrpcControlClient(channels[1]).list_runs()
            with pytest.raises(UnauthenticatedError, match="operator token"):
                await GrpcNodeKeysClient(channels[1]).list_node_keys()
            use_operator_token(channels[1], "sesame")
            assert await GrpcControlClient(channels[1]).list_runs() == []

            # Enrolled and revoked at run time, through the NodeKeys API on the Control port.
            keys_api = GrpcNodeKeysClient(channels[1])
            newcomer = generate_key("ecdsa-p256")
            newcomer_line = public_key_line(newcomer.public_key())
            enrolled = await keys_api.add_node_key(newcomer_line + " laptop")
            assert newcomer_line in enrolled
            assert len(enrolled) == 2
            channels.append(connect(listening.fleet, root_certificates=ca, insecure=False))
            sign_requests(channels[2], RequestSigner(newcomer))
            assert (await GrpcFleetClient(channels[2]).register_node({})).node_id > 0
            left = await keys_api.remove_node_key(public_key_line(node_key.public_key()))
            assert left == [newcomer_line]
            with pytest.raises(UnauthenticatedError, match="revoked"):
                await node.heartbeat(node_id)
            assert (tmp_path / "keys.csv").read_text() == newcomer_line + "\n"
            with pytest.raises(InvalidMessageError, match="not an OpenSSH public key"):
                await keys_api.add_node_key("ssh-rsa nonsense")
        finally:
            for channel in channels:
                channel.close()
            stop.set()
        async with asyncio.timeout(10):
            await task
    assert (tmp_path / "state.db.secret").stat().st_mode & 0o777 == 0o600
    assert "SuperNode authentication on: 1 allowed key" in caplog.text
    assert "Control and ServerAppIo require an operator token" in caplog.text


async def test_insecure_serving_says_it_is_open(caplog: pytest.LogCaptureFixture) -> None:
    settings = SuperLinkSettings(
        insecure=True,
        database=":memory:",
        fleet_api_address="127.0.0.1:0",
        serverappio_api_address="127.0.0.1:0",
        control_api_address="0.0.0.0:0",
    )
    caplog.set_level(logging.INFO)
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(serve(settings, ready=ready, stop=stop))
        async with asyncio.timeout(10):
            await ready
        stop.set()
        async with asyncio.timeout(10):
            await task
    assert "--insecure: no TLS and no operator authentication" in caplog.text
    assert "Control API listens on 0.0.0.0" in caplog.text
    assert "anyone who reaches it controls runs" in caplog.text


def test_credentials_reload_enrolls_and_revokes_keys_and_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, certs_dir: Path
) -> None:
    first, second = generate_key(), generate_key("ecdsa-p256")
    keys = tmp_path / "keys.csv"
    keys.write_text(public_key_line(first.public_key()) + "\n")
    operators = tmp_path / "operators.txt"
    operators.write_text(f"a:{hash_token('one')}\n")
    settings = SuperLinkSettings(
        certificates={
            "ca": certs_dir / "ca.crt",
            "cert": certs_dir / "server.pem",
            "key": certs_dir / "server.key",
        },
        database=":memory:",
        enable_supernode_auth=True,
        auth_list_public_keys=keys,
        auth_operator_tokens=operators,
    )
    credentials = Credentials(settings)
    register = "/stamen.v1.Fleet/RegisterNode"
    list_runs = "/stamen.v1.Control/ListRuns"

    def admitted(key: PrivateKey) -> bool:
        try:
            credentials.fleet().authenticate(register, RequestSigner(key).headers(register), None)
        except UnauthenticatedError:
            return False
        return True

    assert (admitted(first), admitted(second)) == (True, False)
    keys.write_text(public_key_line(second.public_key()) + "\n")
    operators.write_text(f"b:{hash_token('two')}\n")
    assert credentials.reload()
    assert (admitted(first), admitted(second)) == (False, True)
    operator = credentials.operators.authenticate(list_runs, {"authorization": "Bearer two"}, None)
    assert operator.operator == "b"
    with pytest.raises(UnauthenticatedError):
        credentials.operators.authenticate(list_runs, {"authorization": "Bearer one"}, None)
    keys.write_text("garbage\n")
    caplog.set_level(logging.ERROR)
    assert not credentials.reload()
    assert "the previous ones stay in force" in caplog.text
    assert admitted(second)


async def test_the_key_registry_needs_node_authentication() -> None:
    registry = NodeKeyRegistry(None, None)
    with pytest.raises(InvalidMessageError, match="--enable-supernode-auth"):
        await registry.list_node_keys()


def test_a_superlink_that_does_not_start_leaves_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(superlink_cli, "setup_logging", lambda *args, **kwargs: None)
    database = tmp_path / "state.db"
    missing = [str(tmp_path / name) for name in ("ca.crt", "server.pem", "server.key")]
    code, output = superlink(
        "--certificates", *missing, "--database", str(database),
        "--allow-unauthenticated-operators",
    )  # fmt: skip
    assert code == 2
    assert "cannot read certificate file" in output
    assert not Path(f"{database}.secret").exists()
