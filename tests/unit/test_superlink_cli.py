"""stamen-superlink: settings, bad input (exit 2, one line), serve() in-process (port 0,
health, graceful drain within the grace period), and the log format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from stamen.codec import encode_message
from stamen.codec.envelope import Envelope
from stamen.common.errors import StamenError, UnavailableError
from stamen.common.logging import FORMAT_ENV, setup_logging
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, RecordDict
from stamen.superlink import cli
from stamen.superlink.serve import Listening, serve
from stamen.superlink.settings import SuperLinkSettings
from stamen.transport.grpc import (
    GrpcFleetClient,
    GrpcServerAppIoClient,
    check_health,
    connect,
)

LOOPBACK = {
    "fleet_api_address": "127.0.0.1:0",
    "serverappio_api_address": "127.0.0.1:0",
    "control_api_address": "127.0.0.1:0",
}


@pytest.fixture
def no_log_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the CLI from reconfiguring this test process's logging."""
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args), env=env)
    return result.exit_code, result.output


# --- settings and bad input ----------------------------------------------------------------


def test_settings_need_exactly_one_of_insecure_and_certificates(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of --certificates"):
        SuperLinkSettings()
    paths = {"ca": tmp_path / "a", "cert": tmp_path / "b", "key": tmp_path / "c"}
    with pytest.raises(ValidationError, match="exactly one of --certificates"):
        SuperLinkSettings(insecure=True, certificates=paths)
    settings = SuperLinkSettings(insecure=True)
    assert (settings.fleet_api_address, settings.database) == (
        "0.0.0.0:9092",
        "stamen-superlink.db",
    )
    with pytest.raises(ValidationError, match="greater than 0"):
        SuperLinkSettings(insecure=True, heartbeat_interval=0)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), None, "pass exactly one of --certificates CA CERT KEY (TLS) and --insecure"),
        (("--insecure", "--certificates", "a", "b", "c"), None, "pass exactly one of"),
        (("--insecure", "--fleet-api-address", "nowhere"), None, "--fleet-api-address: 'nowhere'"),
        ((), {"STAMEN_INSECURE": "1", "STAMEN_CONTROL_API_ADDRESS": "x:y"}, "--control-api-add"),
        (("--insecure", "--heartbeat-interval", "-1"), None, "--heartbeat-interval: Input should"),
        ((), {"STAMEN_INSECURE": "1", "STAMEN_RUN_LEASE": "0"}, "--run-lease: Input should"),
        (("--insecure", "--delivery-lease", "0"), None, "--delivery-lease: Input should"),
        (("--ssl-certfile", "b"), None, "go together: pass all three"),
        (("--certificates", "a", "b", "c", "--ssl-keyfile", "c"), None, "either --certificates"),
        (("--insecure", "--metrics-address", "x"), None, "--metrics-address: 'x' is not"),
        (("--insecure", "--dashboard-address", "a:b"), None, "--dashboard-address: 'a:b' is"),
        (("--insecure", "--max-bundle-size", "0"), None, "--max-bundle-size: Input should be"),
        ((), {"STAMEN_INSECURE": "1", "STAMEN_MAX_BUNDLE_SIZE": "-2"}, "--max-bundle-size: "),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: tuple[str, ...], env: dict[str, str] | None, expected: str
) -> None:
    code, output = invoke(*args, env=env)
    assert code == 2
    assert output.count("\n") == 1
    assert output.startswith("stamen-superlink: error: ")
    assert expected in output


def test_an_unreadable_certificate_file_is_named(tmp_path: Path, no_log_setup: None) -> None:
    missing = tmp_path / "server.pem"
    ca, key = tmp_path / "ca.crt", tmp_path / "server.key"
    open_operators = "--allow-unauthenticated-operators"
    code, output = invoke("--certificates", str(ca), str(missing), str(key), open_operators)
    assert code == 2
    assert f"cannot read certificate file {ca}" in output  # the first one it reads
    code, output = invoke(
        "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(missing), "--ssl-keyfile", str(key),
        open_operators,
    )  # fmt: skip
    assert (code, f"{ca}" in output) == (2, True)


def test_an_address_it_cannot_listen_on_is_bad_input(no_log_setup: None) -> None:
    code, output = invoke(
        "--insecure", "--database", ":memory:", "--fleet-api-address", "1.2.3.4:1"
    )
    assert code == 2
    assert "cannot listen on 1.2.3.4:1" in output


def test_a_corrupt_database_is_refused_with_one_line(tmp_path: Path, no_log_setup: None) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xa5" * 8192)
    code, output = invoke(
        "--insecure", "--database", str(path), "--fleet-api-address", "127.0.0.1:0"
    )
    assert code == 2
    (line,) = output.strip().splitlines()
    assert line.startswith("stamen-superlink: error: ")
    assert "corrupt" in line


def test_a_dashboard_address_it_cannot_listen_on_is_bad_input(no_log_setup: None) -> None:
    code, output = invoke(
        "--insecure", "--database", ":memory:", "--dashboard-address", "1.2.3.4:1"
    )
    assert code == 2
    assert "cannot listen on 1.2.3.4:1" in output


def test_help_explains_and_version_prints() -> None:
    code, output = invoke("--help")
    assert code == 0
    for text in (
        "--certificates CA CERT KEY",
        "--insecure",
        "STAMEN_DATABASE",
        "health check",
        "--run-lease SECONDS",
        "STAMEN_RUN_LEASE",
        "--delivery-lease SECONDS",
        "STAMEN_DELIVERY_LEASE",
    ):
        assert text in output
    code, output = invoke("--version")
    assert code == 0
    assert output.startswith("stamen-superlink, version ")


# --- serve() ---------------------------------------------------------------------------------


@asynccontextmanager
async def serving(**overrides: object) -> AsyncIterator[tuple[Listening, asyncio.Event]]:
    settings = SuperLinkSettings(insecure=True, database=":memory:", **LOOPBACK, **overrides)
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(serve(settings, ready=ready, stop=stop))
        async with asyncio.timeout(10):
            listening = await ready
        try:
            yield listening, stop
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task


@asynccontextmanager
async def channel_to(address: str) -> AsyncIterator[object]:
    channel = connect(address, root_certificates=None, insecure=True)
    try:
        yield channel
    finally:
        channel.close()


async def test_serve_binds_port_0_reports_the_ports_and_answers_health() -> None:
    async with serving() as (listening, _):
        addresses = (listening.fleet, listening.serverappio, listening.control)
        assert all(re.fullmatch(r"127\.0\.0\.1:[1-9]\d*", a) for a in addresses)
        assert len(set(addresses)) == 3
        for address in addresses:
            async with channel_to(address) as channel:
                await check_health(channel, timeout=5)
        async with channel_to(listening.fleet) as channel:
            registration = await GrpcFleetClient(channel).register_node({})
            assert registration.heartbeat_interval == 5.0


async def test_the_run_lease_setting_is_what_runners_are_granted() -> None:
    async with serving(run_lease=4.5) as (listening, _), channel_to(listening.serverappio) as ch:
        serverappio = GrpcServerAppIoClient(ch)
        run_id = await serverappio.create_run("server:app", "client:app", {})
        await serverappio.update_run_status(run_id, "running")
        assert await serverappio.renew_run_lease(run_id, "runner-a") == 4.5


async def test_stop_ends_long_polls_at_once_and_refuses_new_calls() -> None:
    async with serving(grace_period=30) as (listening, stop), channel_to(listening.fleet) as ch:
        fleet = GrpcFleetClient(ch)
        node = (await fleet.register_node({})).node_id
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            poll = tg.create_task(fleet.pull_messages(node, timeout=60))
            await fleet.heartbeat(node)  # sent after the poll on the same connection
            stop.set()
        assert poll.result() == []
        with pytest.raises(UnavailableError):
            await fleet.heartbeat(node)


async def test_calls_past_the_grace_period_end_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "stamen.superlink.serve")
    started = asyncio.Event()

    async def slow_chunks() -> AsyncIterator[bytes]:
        while True:  # a client that will not finish within the grace period
            yield b"\0" * 8
            started.set()
            await asyncio.sleep(0.05)

    async with serving(grace_period=0.2) as (listening, stop):
        async with channel_to(listening.fleet) as channel:
            node = (await GrpcFleetClient(channel).register_node({})).node_id
        async with channel_to(listening.serverappio) as channel:
            serverappio = GrpcServerAppIoClient(channel)
            run_id, envelope = await _push_instruction(serverappio, node)
            [object_id] = envelope.object_ids
            push = serverappio.push_object(run_id, object_id, 1 << 20, slow_chunks())
            async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
                pushing = tg.create_task(_raised(push))
                await started.wait()
                await serverappio.get_run(run_id)  # sent after the push, same connection
                stop.set()
            assert isinstance(pushing.result(), UnavailableError)
            assert "shut down before this call finished" in str(pushing.result())
    assert "waiting up to 0.2s for 1 call(s) in flight" in caplog.text
    assert "still running after the 0.2s grace period" in caplog.text


async def _push_instruction(serverappio: GrpcServerAppIoClient, node: int) -> tuple[int, Envelope]:
    run_id = await serverappio.create_run("s:a", "c:a", {})
    content = RecordDict({"m": ArrayRecord([np.zeros(4)])})
    message = Message(content, dst_node_id=node, message_type="train")
    message.metadata.run_id = run_id
    envelope, _ = encode_message(message)
    await serverappio.push_messages(run_id, [envelope])
    return run_id, envelope


async def _raised(call: Awaitable[object]) -> BaseException | None:
    try:
        await call
    except StamenError as exc:
        return exc
    return None


# --- logging -----------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    grpclib_level = logging.getLogger("grpclib").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("grpclib").setLevel(grpclib_level)


def test_log_lines_are_readable_and_carry_their_context(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", stream)
    logger = logging.getLogger("stamen.superlink.test")
    logger.info("node %d registered", 7, extra={"node_id": 7})
    logger.debug("not shown")
    logger.info("plain")
    logger.info("run ended", extra={"run_id": 12, "node_id": 7})
    first, second, third = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO superlink.test: node 7 registered", first
    )  # its node id once: the message names it
    assert second.endswith("INFO superlink.test: plain")
    assert third.endswith("INFO superlink.test: run ended [run_id=12 node_id=7]")
    assert "\033[" not in stream.getvalue()  # no colours: not a terminal


def test_json_log_lines_for_machines(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", stream, fmt="json", label="worker 9")
    try:
        logging.getLogger("stamen.runner.x").warning("round %d failed", 2, extra={"run_id": 5})
    finally:
        os.environ.pop(FORMAT_ENV, None)
    entry = json.loads(stream.getvalue())
    assert entry["time"][:4].isdigit()
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "WARNING",
        "logger": "runner.x",
        "message": "round 2 failed",
        "run_id": 5,
        "process": "worker 9",
    }
