"""Submitted runs in the SuperLink: bundles kept by hash, the launcher told, a runner that
dies marks its run failed, logs followed, results read back, bundles served to nodes.

The launcher is a fake here (the real one starts processes: tests/integration); the
Control API is called over the memory transport, as a tool in the same process would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stamen.common.bundle import build_bundle, bundle_hash
from stamen.common.errors import (
    InvalidMessageError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from stamen.common.records import UserConfig
from stamen.common.run import Run, RunStatus
from stamen.superlink import SuperLink
from stamen.superlink.control import ExitFn
from stamen.superlink.launcher import RunnerLauncher
from stamen.superlink.runfiles import RunFiles
from stamen.superlink.superlink import open_superlink
from stamen.transport.memory.apis import MemoryControl

PYPROJECT = """
[project]
name = "app"
version = "1.0"

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"
"""


class FakeLauncher:
    def __init__(self) -> None:
        self.launched: dict[int, tuple[Path, ExitFn]] = {}
        self.stopped: list[int] = []

    def launch(self, run_id: int, app_dir: Path, on_exit: ExitFn) -> None:
        self.launched[run_id] = (app_dir, on_exit)

    def stop(self, run_id: int) -> None:
        self.stopped.append(run_id)


@pytest.fixture
def bundle(tmp_path: Path) -> bytes:
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "server.py").write_text("app = None\n")
    return build_bundle(app).data


@pytest.fixture(params=["memory", "sqlite"])
async def link(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SuperLink]:
    database = ":memory:" if request.param == "memory" else str(tmp_path / "state.db")
    async with open_superlink(database) as superlink:
        yield superlink


@pytest.fixture
def launcher(link: SuperLink) -> FakeLauncher:
    fake = FakeLauncher()
    link.control.launcher = fake
    return fake


async def test_a_submitted_run_has_its_bundle_and_components(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    run = await submit(control, bundle, {"lr": 0.1})
    assert (run.server_app, run.client_app, run.run_config) == (
        "server:app",
        "client:app",
        {"lr": 0.1},
    )
    assert run.status == RunStatus.PENDING
    assert len(run.bundle) == 64
    app_dir, _ = launcher.launched[run.run_id]
    assert (app_dir / "server.py").read_text() == "app = None\n"
    assert (await control.get_run(run.run_id)).bundle == run.bundle
    again = await submit(control, bundle, {})
    assert again.bundle == run.bundle
    assert again.run_id != run.run_id


async def test_a_bundle_that_is_not_an_app_is_refused(
    link: SuperLink, launcher: FakeLauncher, tmp_path: Path
) -> None:
    control = MemoryControl(link.control)
    with pytest.raises(InvalidMessageError, match="not an app bundle"):
        await submit(control, b"not a zip", {})
    app = tmp_path / "half"
    app.mkdir()
    (app / "pyproject.toml").write_text('[tool.stamen.app.components]\nserverapp = "s:a"\n')
    with pytest.raises(InvalidMessageError, match="names no clientapp in"):
        # built by hand: build_bundle itself refuses such an app
        await submit(control, _zip({"pyproject.toml": (app / "pyproject.toml").read_text()}), {})
    assert launcher.launched == {}


async def test_without_a_launcher_submitting_is_unavailable(link: SuperLink, bundle: bytes) -> None:
    with pytest.raises(UnavailableError, match="does not launch runs"):
        await submit(MemoryControl(link.control), bundle, {})


async def test_a_runner_that_exits_early_fails_its_run_with_the_reason(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    run = await submit(control, bundle, {})
    _, on_exit = launcher.launched[run.run_id]
    on_exit(run.run_id, 1, "stamen-serverapp: error: cannot load app 'server:app'")
    failed = await control.get_run(run.run_id)
    assert (failed.status, failed.sub_status) == (RunStatus.FINISHED, RunStatus.FAILED)
    assert failed.details == (
        "the ServerApp runner exited with code 1: "
        "stamen-serverapp: error: cannot load app 'server:app'"
    )
    on_exit(run.run_id, 0, "")  # a finished run stays as it is
    assert (await control.get_run(run.run_id)).details == failed.details


async def test_stopping_a_run_stops_its_runner(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    run = await submit(control, bundle, {})
    stopped = await control.stop_run(run.run_id)
    assert stopped.sub_status == RunStatus.STOPPED
    assert launcher.stopped == [run.run_id]


async def test_a_log_is_followed_until_it_closes(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    run = await submit(control, bundle, {})
    files = link.files
    assert files is not None
    waiting = asyncio.create_task(control.get_logs(run.run_id, 0, 30.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    files.append_log(run.run_id, b"line 1\n")
    first = await waiting
    assert (first.text, first.next_offset) == (b"line 1\n", 7)
    nothing_yet = await control.get_logs(run.run_id, 7, 0.0)
    assert nothing_yet.text == b""
    closing = asyncio.create_task(control.get_logs(run.run_id, 7, 30.0))
    await asyncio.sleep(0)
    files.close_log(run.run_id)
    assert (await closing).text == b""
    with pytest.raises(NotFoundError):
        await control.get_logs(12345, 0, 0.0)


async def test_results_are_listed_and_read_back(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    run = await submit(control, bundle, {})
    assert await control.list_results(run.run_id) == []
    files = link.files
    assert files is not None
    (files.results_folder(run.run_id) / "history.json").write_text("{}")
    [result] = await control.list_results(run.run_id)
    assert (result.name, result.size) == ("history.json", 2)
    data = b"".join([bytes(c) async for c in control.pull_result(run.run_id, "history.json")])
    assert data == b"{}"
    with pytest.raises(NotFoundError, match=r"has no result '\.\./x'"):
        async for _ in control.pull_result(run.run_id, "../x"):
            pass


async def test_nodes_fetch_the_bundle_of_an_open_run_only(
    link: SuperLink, launcher: FakeLauncher, bundle: bytes
) -> None:
    control = MemoryControl(link.control)
    node = await link.fleet.register_node({})
    run = await submit(control, bundle, {})
    pulled = b"".join([bytes(c) async for c in link.fleet.pull_object(node.node_id, run.bundle)])
    assert pulled == bundle
    await control.stop_run(run.run_id)
    with pytest.raises((NotFoundError, PermissionDeniedError)):
        async for _ in link.fleet.pull_object(node.node_id, run.bundle):
            pass


async def submit(control: MemoryControl, bundle: bytes, run_config: UserConfig) -> Run:
    """What `stamen run` does: push the bundle in chunks, then submit a run naming it."""
    digest = bundle_hash(bundle)
    await control.push_bundle(digest, len(bundle), chunks_of(bundle))
    return await control.submit_run(digest, run_config)


async def chunks_of(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, max(len(data), 1), size):
        yield data[start : start + size]


def _zip(files: dict[str, str]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_a_launched_runner_is_told_where_nodes_connect(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "runs")
    launcher = RunnerLauncher(files, "127.0.0.1:9091", fleet_address="link.example:9092")
    command = launcher.command(7, tmp_path / "app")
    assert command[command.index("--fleet-address") + 1] == "link.example:9092"
    assert "--fleet-address" not in RunnerLauncher(files, "127.0.0.1:9091").command(7, tmp_path)
