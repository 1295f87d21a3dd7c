"""A SuperNode with a trust policy: refused bundles are never unpacked nor run, and the
node goes on serving other runs. The bundle's ClientApp writes a marker file when it is
imported, so "nothing ran" is checked, not assumed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stamen.common.bundle import build_bundle, bundle_hash
from stamen.common.run import Run
from stamen.common.signing import key_id, sign_bundle
from stamen.common.trust import TrustPolicy, UntrustedBundleError
from stamen.supernode import bundles
from stamen.supernode.bundles import BundleExecutor

PYPROJECT = """
[project]
name = "marker"
version = "1.0"

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"
"""


class FakeWorker:
    """Stands in for the worker process: importing the app is what writes the marker."""

    def __init__(self, app: str, folder: Path) -> None:
        self.folder = folder

    async def start(self) -> None:
        source = (self.folder / "client.py").read_text()
        exec(compile(source, str(self.folder / "client.py"), "exec"), {})

    async def execute(self, task: Any) -> str:
        return f"ran {task.context.run_id}"

    async def aclose(self) -> None:
        pass


def marker_bundle(root: Path, marker: Path, server: str = "app = 1\n") -> bytes:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "server.py").write_text(server)
    (root / "client.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    return build_bundle(root).data


class Federation:
    """What the node can fetch: runs by id, bundles by hash; counts the fetches."""

    def __init__(self) -> None:
        self.runs: dict[int, Run] = {}
        self.objects: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def submit(self, run_id: int, data: bytes) -> None:
        self.objects[bundle_hash(data)] = data
        self.runs[run_id] = Run(run_id, client_app="client:app", bundle=bundle_hash(data))

    async def get_run(self, run_id: int) -> Run:
        return self.runs[run_id]

    async def pull_object(self, object_id: str) -> bytes:
        self.fetched.append(object_id)
        return self.objects[object_id]


def task(run_id: int) -> Any:
    return SimpleNamespace(context=SimpleNamespace(run_id=run_id))


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "WorkerProcessExecutor", FakeWorker)


def test_only_a_trusted_signed_bundle_runs(tmp_path: Path) -> None:
    publisher, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    marker = tmp_path / "ran"
    app = marker_bundle(tmp_path / "app", marker)
    signed = sign_bundle(app, publisher)
    tampered = bytearray(signed)
    tampered[len(app) // 2] ^= 0x01
    other = marker_bundle(tmp_path / "other", marker, server="app = 2\n")
    assert other != app
    replayed = other[:-2] + signed[len(app) - 2 :]  # the signature moved onto another bundle

    federation = Federation()
    federation.submit(1, app)
    federation.submit(2, bytes(tampered))
    federation.submit(3, sign_bundle(app, stranger))
    federation.submit(4, replayed)
    federation.submit(5, signed)
    policy = TrustPolicy({key_id(publisher.public_key()): publisher.public_key()}, frozenset())
    cache = tmp_path / "cache"
    executor = BundleExecutor(cache, policy=policy)
    executor.attach(federation.get_run, federation.pull_object)

    async def serve() -> None:
        reasons = {}
        for run_id in (1, 2, 3, 4):
            with pytest.raises(UntrustedBundleError) as caught:
                await executor.execute(task(run_id))
            reasons[run_id] = str(caught.value)
            assert str(caught.value).startswith(
                f"bundle sha256:{federation.runs[run_id].bundle} is not signed by a "
                "trusted publisher: "
            )
        assert "carries no signature" in reasons[1]
        assert "does not match its content" in reasons[2]
        assert "is not trusted here" in reasons[3]
        assert "does not match its content" in reasons[4]
        assert not marker.exists()
        assert not cache.exists() or not any(cache.iterdir())  # nothing was unpacked
        # A refused bundle is not fetched again for its run's next task.
        with pytest.raises(UntrustedBundleError, match="carries no signature"):
            await executor.execute(task(1))
        assert federation.fetched.count(federation.runs[1].bundle) == 1
        # The node goes on serving: the signed bundle runs.
        assert await executor.execute(task(5)) == "ran 5"
        assert marker.exists()
        assert (cache / federation.runs[5].bundle / "client.py").is_file()
        await executor.aclose()

    asyncio.run(serve())


def test_a_bundle_cached_before_the_policy_is_checked_again(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    app = marker_bundle(tmp_path / "app", marker)
    federation = Federation()
    federation.submit(1, app)
    cache = tmp_path / "cache"

    async def serve(policy: TrustPolicy | None) -> str:
        executor = BundleExecutor(cache, policy=policy)
        executor.attach(federation.get_run, federation.pull_object)
        try:
            return await executor.execute(task(1))  # type: ignore[arg-type,return-value]
        finally:
            await executor.aclose()

    assert asyncio.run(serve(None)) == "ran 1"  # an open node unpacked it into the cache
    marker.unlink()
    pinned_other = TrustPolicy({}, frozenset({"0" * 64}))
    with pytest.raises(UntrustedBundleError, match="--allow-bundle"):
        asyncio.run(serve(pinned_other))
    assert not marker.exists()
    assert asyncio.run(serve(TrustPolicy({}, frozenset({bundle_hash(app)})))) == "ran 1"


def test_a_run_naming_another_client_app_than_its_signed_bundle_is_refused(
    tmp_path: Path,
) -> None:
    publisher = Ed25519PrivateKey.generate()
    marker = tmp_path / "ran"
    signed = sign_bundle(marker_bundle(tmp_path / "app", marker), publisher)
    federation = Federation()
    federation.submit(1, signed)
    federation.runs[1] = Run(1, client_app="server:app", bundle=bundle_hash(signed))
    policy = TrustPolicy({key_id(publisher.public_key()): publisher.public_key()}, frozenset())
    executor = BundleExecutor(tmp_path / "cache", policy=policy)
    executor.attach(federation.get_run, federation.pull_object)
    with pytest.raises(UntrustedBundleError, match="names ClientApp 'client:app', not the run's"):
        asyncio.run(executor.execute(task(1)))
    assert not marker.exists()
