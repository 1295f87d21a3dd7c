"""Deployment scenarios: real SuperLink, SuperNode and ServerApp processes on loopback.

Stamen: stamen-superlink, N x stamen-supernode, stamen-serverapp.
Flower 1.42: flower-superlink (--disable-runtime-dependency-installation: its default
tries to install packages at run time and fails offline), N x flower-supernode, and
`flwr run --stream` against that SuperLink. Every process started is stopped by its PID.
Round times come from the "[ROUND k]" / "[SUMMARY]" lines, timestamped as they are read;
exchange times (push to last reply) from "configure_fit: strategy sampled" to "aggregate_fit:
received" (and the same for evaluate), lines both frameworks' round loops print.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.measure import Sample, TreeMemory, base_env, first_mark, kill_tree

ROOT = Path(__file__).resolve().parent.parent
STAMEN_BIN = ROOT / ".venv/bin"
FLOWER_BIN = ROOT / "benchmarks/.venv-flower/bin"
TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_EXCHANGE_START = ("configure_fit: strategy sampled", "configure_evaluate: strategy sampled")
_EXCHANGE_END = ("aggregate_fit: received", "aggregate_evaluate: received")


class LineClock:
    """Reads a process's output in a thread, timestamping the round and exchange lines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.marks: list[float] = []
        self.exchanges: list[float] = []
        self._pushed: float | None = None
        self.tail: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            self.tail = [*self.tail[-40:], line]
            now = time.time()
            if "[ROUND " in line or "[SUMMARY]" in line:
                self.marks.append(now)
            elif any(start in line for start in _EXCHANGE_START):
                self._pushed = now
            elif self._pushed is not None and any(end in line for end in _EXCHANGE_END):
                self.exchanges.append(now - self._pushed)
                self._pushed = None

    def join(self) -> None:
        self._thread.join(timeout=10)

    @property
    def round_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    subprocess.run(
        ["bash", str(ROOT / "scripts/make-certs.sh"), str(directory)],
        check=True, capture_output=True,
    )  # fmt: skip
    return directory / "ca.crt", directory / "server.pem", directory / "server.key"


def scenario(
    nodes: int, rounds: int, tls: bool = False, **bench: str
) -> Callable[..., Sample | None]:
    def run(framework: str, work: Path) -> Sample | None:
        env = base_env(
            framework, work, ROUNDS=str(rounds), FRACTION="1.0", MIN_NODES=str(nodes), **bench
        )
        runner = _stamen if framework == "stamen" else _flower
        return runner(env, work, nodes, tls)

    return run


def _start(
    cmd: Sequence[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def _finish(
    procs: list[subprocess.Popen[bytes]], driver: subprocess.Popen[bytes], memory: TreeMemory,
    clock: LineClock, started: float, work: Path, names: dict[int, str], run_started: float,
) -> Sample | None:  # fmt: skip
    try:
        driver.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    finally:
        ended = time.time()
        wall, run_wall = ended - started, ended - run_started
        for proc in [driver, *procs]:
            kill_tree(proc.pid)
        memory.__exit__(None, None, None)
        clock.join()
    if driver.returncode != 0:
        raise RuntimeError("the run failed:\n" + "".join(clock.tail))
    sample = Sample(wall, memory.peak / 2**20, first_mark(work, started),
                    {"round_seconds": clock.round_seconds, "run_wall": run_wall,
                     "exchange_seconds": clock.exchanges})  # fmt: skip
    sample.peak_pss_mib = memory.peak_pss / 2**20
    sample.peaks_by_name = {
        name: memory.peak_by_root.get(pid, 0) / 2**20 for pid, name in names.items()
    }
    return sample


def _stamen(env: dict[str, str], work: Path, nodes: int, tls: bool) -> Sample | None:
    fleet, appio, control = free_port(), free_port(), free_port()
    security = ["--insecure"]
    client_security = ["--insecure"]
    if tls:
        ca, cert, key = make_certs(work / "certs")
        # Loopback measurements of the transport: operator tokens stay off, explicitly.
        security = ["--certificates", str(ca), str(cert), str(key),
                    "--allow-unauthenticated-operators"]  # fmt: skip
        client_security = ["--root-certificates", str(ca)]
    started = time.time()
    link = _start(
        [str(STAMEN_BIN / "stamen-superlink"), *security, "--database", str(work / "link.db"),
         "--fleet-api-address", f"127.0.0.1:{fleet}",
         "--serverappio-api-address", f"127.0.0.1:{appio}",
         "--control-api-address", f"127.0.0.1:{control}"],
        env, work / "superlink.log",
    )  # fmt: skip
    memory = TreeMemory([link.pid]).__enter__()
    procs = [link]
    for i in range(nodes):
        node = _start(
            [str(STAMEN_BIN / "stamen-supernode"), "benchmarks.apps.app:client", "--dir", str(ROOT),
             *client_security, "--server", f"127.0.0.1:{fleet}",
             "--node-config", f"partition-id={i} num-partitions={nodes}"],
            env, work / f"supernode-{i}.log",
        )  # fmt: skip
        memory.add(node.pid)
        procs.append(node)
    run_started = time.time()
    driver = subprocess.Popen(
        [str(STAMEN_BIN / "stamen-serverapp"), "benchmarks.apps.app:server", "--dir", str(ROOT),
         *client_security, "--server", f"127.0.0.1:{appio}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    memory.add(driver.pid)
    clock = LineClock(driver)
    return _finish(
        procs, driver, memory, clock, started, work, {link.pid: "SuperLink"}, run_started
    )


FLOWER_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "benchapp"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "stamen-bench"

[tool.flwr.app.components]
serverapp = "benchmarks.apps.app:server"
clientapp = "benchmarks.apps.app:client"

[tool.flwr.app.config]
rounds = 3
"""


def _flower(env: dict[str, str], work: Path, nodes: int, tls: bool) -> Sample | None:
    # Flower 1.42 serves its Fleet, Control and runtime APIs over HTTP on one port.
    port = free_port()
    security = ["--insecure"]
    connection = "insecure = true"
    client_security = ["--insecure"]
    if tls:
        ca, cert, key = make_certs(work / "certs")
        security = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
                    "--ssl-keyfile", str(key)]  # fmt: skip
        client_security = ["--root-certificates", str(ca)]
        connection = f'root-certificates = "{ca}"'
    app_dir = work / "benchapp"
    app_dir.mkdir()
    (app_dir / "pyproject.toml").write_text(FLOWER_PYPROJECT)
    (app_dir / "placeholder.py").write_text("")
    # `flwr run` finds its SuperLink by a named connection in $FLWR_HOME/config.toml.
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{port}"\n{connection}\n'
    )
    started = time.time()
    link = _start(
        [str(FLOWER_BIN / "flower-superlink"), *security, "--database", str(work / "link.db"),
         "--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(port)],
        env, work / "superlink.log",
    )  # fmt: skip
    memory = TreeMemory([link.pid]).__enter__()
    procs = [link]
    for i in range(nodes):
        node = _start(
            [str(FLOWER_BIN / "flower-supernode"), *client_security,
             "--superlink", f"127.0.0.1:{port}", "--host", "127.0.0.1", "--port", str(free_port()),
             "--node-config", f"partition-id={i} num-partitions={nodes}"],
            env, work / f"supernode-{i}.log",
        )  # fmt: skip
        memory.add(node.pid)
        procs.append(node)
    _wait_port(port)
    run_started = time.time()
    driver = subprocess.Popen(
        [str(FLOWER_BIN / "flwr"), "run", str(app_dir), "bench", "--stream"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=app_dir,
    )  # fmt: skip
    memory.add(driver.pid)
    clock = LineClock(driver)
    return _finish(
        procs, driver, memory, clock, started, work, {link.pid: "SuperLink"}, run_started
    )


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
