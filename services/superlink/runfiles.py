"""RunFiles: what the SuperLink keeps on disk for submitted runs, besides its state.

    ROOT/bundles/HASH.bundle    the app bundles, named by their sha256
    ROOT/apps/HASH/             each bundle unpacked, for the runner processes to import
    ROOT/runs/RUN_ID/log.txt    the run's ServerApp log (what the runner printed)
    ROOT/runs/RUN_ID/results/   the files the runner left (history.json, metrics.csv, ...)

ROOT is `<database>.runs` next to a SQLite state, so bundles, logs and results outlive a
restart as the runs do; a SuperLink with its state in memory uses a temporary folder,
removed when it closes. Readers of a log wait for what is appended to it (`wait_log`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from stamen.codec.objects import CHUNK_SIZE
from stamen.common.bundle import bundle_hash, read_bundle_project, unpack_bundle
from stamen.common.errors import ConfigError, IntegrityError, NotFoundError, ObjectNotFoundError
from stamen.common.project import read_project
from stamen.transport.types import ResultFile

__all__ = ["LOG_CHUNK", "RunFiles", "SubmittedApp"]

LOG_CHUNK = 1024 * 1024
"""Most bytes of log one read returns."""


@dataclass(frozen=True, slots=True)
class SubmittedApp:
    """A stored bundle: its hash, its unpacked folder and the components it declares."""

    bundle: str
    directory: Path
    server_app: str
    client_app: str


class RunFiles:
    """Bundles, logs and results under one folder (see the module docstring)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._temporary = root is None
        self.root = Path(tempfile.mkdtemp(prefix="stamen-runs-")) if root is None else Path(root)
        for folder in ("bundles", "apps", "runs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._appended: dict[int, asyncio.Event] = {}
        self._open_logs: set[int] = set()

    def close(self) -> None:
        """Remove a temporary folder (a SuperLink in memory keeps nothing)."""
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- bundles ---------------------------------------------------------------------
    def store_bundle(self, data: bytes) -> SubmittedApp:
        """Keep `data` (once per hash) and unpack it; IntegrityError when it is not an app
        bundle, ConfigError when its pyproject does not name both components."""
        digest = bundle_hash(data)
        read_bundle_project(data)  # a zip with a pyproject.toml, or IntegrityError
        directory = unpack_bundle(data, digest, self.root / "apps")
        components = read_project(directory).components
        server_app, client_app = components.get("serverapp"), components.get("clientapp")
        if not server_app or not client_app:
            shutil.rmtree(directory, ignore_errors=True)
            missing = "serverapp" if not server_app else "clientapp"
            raise ConfigError(
                f"the bundle's pyproject.toml names no {missing} in "
                "[tool.stamen.app.components] (or [tool.flwr.app.components])"
            )
        path = self.bundle_path(digest)
        if not path.is_file():
            staging = path.with_suffix(f".{os.getpid()}.partial")
            staging.write_bytes(data)
            staging.replace(path)
        return SubmittedApp(digest, directory, server_app, client_app)

    def stored_app(self, digest: str) -> SubmittedApp:
        """The app of the kept bundle `digest`; NotFoundError when none was kept."""
        path = self.bundle_path(digest)
        if not path.is_file():
            raise NotFoundError(
                f"bundle {digest[:12]} is not on this SuperLink: push it first (PushBundle)"
            )
        return self.store_bundle(path.read_bytes())  # unpacked again if its folder went

    def bundle_path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise IntegrityError(f"{digest!r} is not a bundle hash (64 hex digits)")
        return self.root / "bundles" / f"{digest}.bundle"

    def has_bundle(self, digest: str) -> bool:
        return self.bundle_path(digest).is_file()

    async def bundle_chunks(self, digest: str) -> AsyncGenerator[bytes, None]:
        path = self.bundle_path(digest)
        if not path.is_file():
            raise ObjectNotFoundError(digest)
        async for chunk in _file_chunks(path):
            yield chunk

    # --- logs ------------------------------------------------------------------------
    def run_folder(self, run_id: int) -> Path:
        folder = self.root / "runs" / str(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def results_folder(self, run_id: int) -> Path:
        folder = self.run_folder(run_id) / "results"
        folder.mkdir(exist_ok=True)
        return folder

    def append_log(self, run_id: int, text: bytes) -> None:
        with (self.run_folder(run_id) / "log.txt").open("ab") as log:
            log.write(text)
        self._wake(run_id)

    def open_log(self, run_id: int) -> None:
        """A runner will write the run's log: readers wait for it until `close_log`."""
        self._open_logs.add(run_id)
        self.run_folder(run_id)

    def close_log(self, run_id: int) -> None:
        """Nothing more will be appended: readers stop waiting."""
        self._open_logs.discard(run_id)
        self._wake(run_id)

    def read_log(self, run_id: int, offset: int) -> bytes:
        path = self.root / "runs" / str(run_id) / "log.txt"
        if not path.is_file():
            return b""
        with path.open("rb") as log:
            log.seek(offset)
            return log.read(LOG_CHUNK)

    async def wait_log(self, run_id: int, offset: int, timeout: float) -> bytes:
        """The log from `offset`; while there is none yet and the log is open (its runner
        runs), wait up to `timeout` for it. b"" then means: nothing more, for now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            event = self._appended.setdefault(run_id, asyncio.Event())
            text = self.read_log(run_id, offset)
            if text or run_id not in self._open_logs or loop.time() >= deadline:
                return text
            try:
                async with asyncio.timeout_at(deadline):
                    await event.wait()
            except TimeoutError:
                return self.read_log(run_id, offset)

    def _wake(self, run_id: int) -> None:
        event = self._appended.pop(run_id, None)
        if event is not None:
            event.set()

    # --- results ---------------------------------------------------------------------
    def results(self, run_id: int) -> list[ResultFile]:
        folder = self.root / "runs" / str(run_id) / "results"
        if not folder.is_dir():
            return []
        files = []
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                name = path.relative_to(folder).as_posix()
                files.append(ResultFile(name, path.stat().st_size, digest))
        return files

    async def result_chunks(self, run_id: int, name: str) -> AsyncGenerator[bytes, None]:
        folder = (self.root / "runs" / str(run_id) / "results").resolve()
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise NotFoundError(f"run {run_id} has no result {name!r}")
        async for chunk in _file_chunks(path):
            yield chunk


async def _file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    with path.open("rb") as file:
        while True:
            chunk = file.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk
