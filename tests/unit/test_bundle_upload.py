"""App bundles larger than one gRPC message: pushed in chunks (Control `PushBundle`), then
named by hash in `SubmitRun`; refused with one clear error above the SuperLink's limit.

The SuperLink's Control API is served over gRPC on 127.0.0.1 (a real socket); the
launcher is a fake (the real one starts processes: tests/integration).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from stamen.codec.objects import MAX_MESSAGE_SIZE, iter_chunks
from stamen.common.buffers import Buffer
from stamen.common.bundle import build_bundle, bundle_hash
from stamen.common.errors import InvalidMessageError, NotFoundError, StamenError
from stamen.superlink import SuperLink
from stamen.superlink.control import ExitFn
from stamen.superlink.superlink import open_superlink
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcControlClient
from stamen.transport.grpc.server import api_server, listen, socket_address
from stamen.transport.grpc.servicers import ControlServicer
from stamen.transport.memory.apis import MemoryControl

pytestmark = pytest.mark.timeout(60)

PYPROJECT = """
[project]
name = "big"
version = "1.0"

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"
"""

WEIGHTS = 20 << 20
"""Bytes of incompressible data in the big app: its bundle is over MAX_MESSAGE_SIZE."""


class FakeLauncher:
    def __init__(self) -> None:
        self.launched: dict[int, Path] = {}

    def launch(self, run_id: int, app_dir: Path, on_exit: ExitFn) -> None:
        self.launched[run_id] = app_dir

    def stop(self, run_id: int) -> None:
        pass


@pytest.fixture
def big_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "server.py").write_text("app = None\n")
    (app / "weights.bin").write_bytes(np.random.default_rng(0).bytes(WEIGHTS))
    return app


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[SuperLink]:
    async with open_superlink(str(tmp_path / "state.db")) as superlink:
        superlink.control.launcher = FakeLauncher()
        yield superlink


@asynccontextmanager
async def control_over_grpc(link: SuperLink) -> AsyncIterator[GrpcControlClient]:
    """The link's Control API served on 127.0.0.1, and a client connected to it."""
    sock = listen("127.0.0.1:0")
    server = api_server(ControlServicer(link.control))
    await server.start(sock=sock)
    channel = connect(socket_address(sock), root_certificates=None, insecure=True)
    try:
        yield GrpcControlClient(channel)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        sock.close()


async def chunks_of(data: bytes) -> AsyncIterator[Buffer]:
    for chunk in iter_chunks(data):
        yield chunk


async def test_a_20_mib_bundle_is_pushed_in_chunks_and_runs(link: SuperLink, big_app: Path) -> None:
    bundle = build_bundle(big_app)
    assert len(bundle.data) > MAX_MESSAGE_SIZE  # one SubmitRun message could not carry it

    async with control_over_grpc(link) as control:
        assert await control.push_bundle(bundle.hash, len(bundle.data), chunks_of(bundle.data))
        run = await control.submit_run(bundle.hash, {"lr": 0.1})
        again = await control.push_bundle(bundle.hash, len(bundle.data), chunks_of(bundle.data))

    assert again is False  # kept once per hash
    assert (run.bundle, run.server_app, run.run_config) == (bundle.hash, "server:app", {"lr": 0.1})
    launcher = link.control.launcher
    assert isinstance(launcher, FakeLauncher)
    unpacked = launcher.launched[run.run_id]
    assert (unpacked / "weights.bin").read_bytes() == (big_app / "weights.bin").read_bytes()
    node = await link.fleet.register_node({})  # nodes fetch it in chunks too
    pulled = b"".join([bytes(c) async for c in link.fleet.pull_object(node.node_id, run.bundle)])
    assert pulled == bundle.data


async def test_a_bundle_over_the_superlinks_limit_is_refused_before_it_is_sent(
    link: SuperLink, big_app: Path
) -> None:
    link.control.max_bundle_size = 8 << 20
    bundle = build_bundle(big_app)
    sent: list[int] = []

    async def counted() -> AsyncIterator[Buffer]:
        async for chunk in chunks_of(bundle.data):
            sent.append(len(chunk))
            yield chunk

    async with control_over_grpc(link) as control:
        with pytest.raises(StamenError) as info:
            await control.push_bundle(bundle.hash, len(bundle.data), counted())
        with pytest.raises(NotFoundError, match="is not on this SuperLink: push it first"):
            await control.submit_run(bundle.hash, {})

    assert str(info.value) == (
        "the bundle is 20.0 MiB, over this SuperLink's limit of 8 MiB: leave data and "
        "weights out of it ([tool.stamen.app] exclude = [...] in its pyproject.toml) or "
        "start the SuperLink with a larger --max-bundle-size"
    )
    assert sum(sent) < len(bundle.data)  # refused on its announced size, not at the end
    assert link.files is not None
    assert not link.files.has_bundle(bundle.hash)


async def test_a_stream_longer_than_announced_is_cut_short(link: SuperLink, big_app: Path) -> None:
    data = build_bundle(big_app).data
    read: list[int] = []

    async def counted() -> AsyncIterator[Buffer]:
        async for chunk in chunks_of(data):
            read.append(len(chunk))
            yield chunk

    with pytest.raises(InvalidMessageError, match="more than the 1000 bytes announced arrived"):
        await MemoryControl(link.control).push_bundle(bundle_hash(data), 1000, counted())
    assert len(read) == 1  # not the whole stream into memory


@pytest.mark.parametrize(
    ("announced", "named", "why"),
    [
        (1, None, r"more than the 1 bytes announced arrived"),
        (10**6, None, r"\d+ bytes arrived, 1000000 were announced"),
        (None, "0" * 64, r"its bytes do not match its sha256"),
        (None, "not-a-hash", r"'not-a-hash' is not a bundle hash"),
    ],
)
async def test_bytes_that_do_not_match_what_was_announced_are_refused(
    link: SuperLink, tmp_path: Path, announced: int | None, named: str | None, why: str
) -> None:
    app = tmp_path / "small"
    app.mkdir()
    (app / "pyproject.toml").write_text(PYPROJECT)
    data = build_bundle(app).data
    control = MemoryControl(link.control)
    size = len(data) if announced is None else announced
    with pytest.raises(InvalidMessageError, match=why):
        await control.push_bundle(named or bundle_hash(data), size, chunks_of(data))
    assert link.files is not None
    assert not link.files.has_bundle(bundle_hash(data))
