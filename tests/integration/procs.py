"""Real processes for the integration tests: start a CLI, watch its log, stop it, clean up.

Each process runs in its own session (process group), so a SIGKILL also reaches the
worker processes it started, as when a machine dies. A reader thread tees its output
(stdout and stderr merged) into a log file and a list of lines that tests wait on, always
with a bound. `Procs` owns every process a test starts: closing it kills what still runs,
so a failing test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = [
    "BIN",
    "ROOT",
    "Proc",
    "Procs",
    "SuperLink",
    "cli",
    "free_port",
    "iter_nodes",
    "make_certs",
    "parameters_digest",
    "port_of",
    "serverapp_args",
    "start_supernodes",
    "superlink_args",
    "supernode_args",
    "terminate_all",
]

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the working directory of every process (the image's /app)."""
BIN = Path(sys.executable).parent
"""Where the console scripts of this environment are."""

READY_TIMEOUT = 60.0
"""Seconds a process gets to log what a test waits for (imports on a busy 2-core box)."""
STOP_TIMEOUT = 20.0
"""Seconds a process gets to exit after SIGTERM."""
_READER_JOIN_TIMEOUT = 5.0


def cli(name: str) -> str:
    """The path of console script `name` in this environment (e.g. stamen-superlink)."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is the project installed in this venv?")
    return str(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for addresses a test must
    know before the server starts; prefer port 0 and the logged address otherwise)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_certs(directory: Path, *hosts: str) -> Path:
    """A CA and a server certificate from scripts/make-certs.sh in `directory`; returns it."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "make-certs.sh"), str(directory), *hosts],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return directory


def parameters_digest(path: Path) -> str:
    """SHA-256 over the arrays that np.savez wrote to `path` (a test app's saved global
    parameters), in order, with their dtypes and shapes: equal digests, equal bits."""
    digest = hashlib.sha256()
    with np.load(path) as saved:
        for index in range(len(saved.files)):
            array = saved[f"arr_{index}"]
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class Proc:
    """One started process, its merged output in `log`, and ways to wait on and stop it."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, cwd: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._file = log.open("w", encoding="utf-8")
        self._file.write(f"$ {' '.join(self.argv)}\n")
        self._file.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._file.write(line)
            self._file.flush()
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def output(self) -> str:
        """Everything it printed so far."""
        with self._changed:
            return "\n".join(self._lines)

    def tail(self, lines: int = 40) -> str:
        with self._changed:
            shown = self._lines[-lines:]
        return f"--- last lines of {self.name} ({self.log}) ---\n" + "\n".join(shown)

    def matches(self, pattern: str) -> list[re.Match[str]]:
        """Every line so far that `pattern` (a regex) is found in."""
        regex = re.compile(pattern)
        with self._changed:
            found = [regex.search(line) for line in self._lines]
        return [match for match in found if match is not None]

    def wait_for(
        self, pattern: str, *, count: int = 1, timeout: float = READY_TIMEOUT
    ) -> list[re.Match[str]]:
        """Wait until `count` lines match `pattern`; fail at once if the process ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in map(regex.search, self._lines) if m is not None]
                if len(found) >= count:
                    return found[:count]
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        state = "timed out" if not self._eof else f"exited with {self.popen.poll()}"
        raise AssertionError(
            f"{self.name}: {state} after {len(found)} of {count} lines matching "
            f"{pattern!r}\n{self.tail()}"
        )

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Its exit code, once it exits by itself within `timeout` seconds."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still running after {timeout:g}s\n{self.tail()}"
            ) from None
        self._reader.join(_READER_JOIN_TIMEOUT)  # all of its output, unless a child holds it
        return code

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then its exit code (it must exit within `timeout` seconds)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL to its whole process group (it and its workers), as if the host died."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Kill what is left of its group and release the pipe and the log file."""
        self.kill()
        self._reader.join(_READER_JOIN_TIMEOUT)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._file.close()


def terminate_all(procs: Sequence[Proc], timeout: float = STOP_TIMEOUT) -> dict[str, int]:
    """SIGTERM to all of `procs` at once, then each one's exit code by name."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    return {proc.name: proc.wait(max(deadline - time.monotonic(), 0.1)) for proc in procs}


class Procs:
    """Every process one test starts; `with Procs(dir) as procs:` kills them all at the end."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._procs: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path = ROOT,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start `argv` as `name`; a bare program name is looked up among this
        environment's console scripts first, then on PATH."""
        if name in {proc.name for proc in self._procs}:
            name = f"{name}-{len(self._procs)}"
        program = argv[0]
        if "/" not in program:
            program = cli(program) if (BIN / program).exists() else shutil.which(program) or program
        proc = Proc(
            name,
            [program, *argv[1:]],
            self.log_dir / f"{name}.log",
            cwd,
            {**self.env, **(env or {})},
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        errors: list[BaseException] = []
        for proc in reversed(self._procs):
            try:
                proc.close()
            except Exception as exc:  # close the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class SuperLink:
    """A started SuperLink and the addresses its three APIs are bound to."""

    proc: Proc
    fleet: str
    serverappio: str
    control: str

    @classmethod
    def started(cls, proc: Proc, timeout: float = READY_TIMEOUT) -> SuperLink:
        """Wait for the SuperLink `proc` to log that it is ready; read its addresses."""
        proc.wait_for(r"SuperLink ready", timeout=timeout)
        found = {}
        for api in ("Fleet", "ServerAppIo", "Control"):
            (match,) = proc.wait_for(rf"{api} API listening on (\S+)", timeout=1)
            found[api] = match.group(1)
        return cls(proc, found["Fleet"], found["ServerAppIo"], found["Control"])


def superlink_args(
    *,
    certs: Path | None,
    database: str = ":memory:",
    ports: tuple[int, int, int] = (0, 0, 0),
    extra: Sequence[str] = (),
) -> list[str]:
    """`stamen-superlink` on 127.0.0.1: TLS with the make-certs files in `certs`, else
    insecure; ports (fleet, serverappio, control), 0 = any free port. With TLS and no
    `--auth-operator-tokens` in `extra`, the operator APIs are opened explicitly
    (`--allow-unauthenticated-operators`: these tests are about other things)."""
    fleet, serverappio, control = ports
    security = ["--insecure"]
    if certs is not None:
        files = (certs / "ca.crt", certs / "server.pem", certs / "server.key")
        security = ["--certificates", *map(str, files)]
        if "--auth-operator-tokens" not in extra:
            security.append("--allow-unauthenticated-operators")
    return [
        "stamen-superlink",
        *security,
        "--database", database,
        "--fleet-api-address", f"127.0.0.1:{fleet}",
        "--serverappio-api-address", f"127.0.0.1:{serverappio}",
        "--control-api-address", f"127.0.0.1:{control}",
        *extra,
    ]  # fmt: skip


def port_of(address: str) -> int:
    """The port of a `HOST:PORT` address."""
    return int(address.rpartition(":")[2])


def supernode_args(
    app: str, directory: Path, server: str, *, certs: Path | None, node_config: str
) -> list[str]:
    """`stamen-supernode` serving `app` from `directory`, TLS when `certs` is given."""
    security = ["--root-certificates", str(certs / "ca.crt")] if certs else ["--insecure"]
    return [
        "stamen-supernode", app, "--dir", str(directory), "--server", server,
        *security, "--node-config", node_config,
    ]  # fmt: skip


def serverapp_args(
    app: str, directory: Path, server: str, *, certs: Path | None, run_config: str
) -> list[str]:
    """`stamen-serverapp` running `app` from `directory`, TLS when `certs` is given."""
    security = ["--root-certificates", str(certs / "ca.crt")] if certs else ["--insecure"]
    return [
        "stamen-serverapp", app, "--dir", str(directory), "--server", server,
        *security, "--run-config", run_config,
    ]  # fmt: skip


def iter_nodes(count: int) -> Iterator[tuple[int, str]]:
    """(partition id, node config) for `count` nodes."""
    for partition in range(count):
        yield partition, f"partition-id={partition} num-partitions={count}"


def start_supernodes(
    procs: Procs,
    count: int,
    app: str,
    directory: Path,
    server: str,
    *,
    certs: Path | None,
    env: Mapping[str, str] | None = None,
    timeout: float = READY_TIMEOUT,
) -> list[Proc]:
    """`count` SuperNodes with partition ids 0..count-1, once each has registered."""
    nodes = [
        procs.start(
            f"supernode-{partition}",
            supernode_args(app, directory, server, certs=certs, node_config=config),
            env=env,
        )
        for partition, config in iter_nodes(count)
    ]
    deadline = time.monotonic() + timeout
    for node in nodes:
        node.wait_for(r"registered as node \d+", timeout=max(deadline - time.monotonic(), 0.1))
    return nodes
