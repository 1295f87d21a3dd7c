"""compose.yaml cannot drift from the CLIs: its services' commands run here, on loopback.

There is no Docker engine on our machines, so this reads compose.yaml and runs every
service's command as a local process with the same flags and files, the way
`docker compose up --exit-code-from serverapp` would: in dependency order (a dependency
that must complete has exited 0, one that must be healthy passes its own healthcheck),
with the repository root as the working directory (the image's WORKDIR holds the
repository's files), each named volume a directory under tmp_path, and each container
address (`0.0.0.0:PORT`, `superlink:PORT`) a free port on 127.0.0.1. The ServerApp must
exit 0 and every long-running service must stop cleanly on SIGTERM. A static check makes
sure the Dockerfile copies every path the commands use.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from procs import ROOT, Proc, Procs, free_port, terminate_all

pytestmark = pytest.mark.integration

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
EXIT_SERVICE = "serverapp"
"""The service whose exit ends the deployment (compose.yaml: --exit-code-from serverapp)."""
CONTAINER_ADDRESS = re.compile(r"\b(?:0\.0\.0\.0|superlink):(\d+)\b")
HEALTHCHECK_TIMEOUT = 60.0


def load_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def start_order(services: dict[str, dict[str, Any]]) -> list[str]:
    """Service names, each after everything it depends on (file order among equals)."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name in services, f"{path[-1]} depends on unknown service {name!r}"
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in ordered:
            return
        for dependency in services[name].get("depends_on", {}):
            visit(dependency, (*path, name))
        ordered.append(name)

    for name in services:
        visit(name, ())
    return ordered


def conditions(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, in either of compose's two forms."""
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def seconds(duration: str) -> float:
    """A compose duration such as "2s", "500ms" or "1m30s", in seconds."""
    assert duration, "an empty duration"
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


class Loopback:
    """Turns the containers' paths and addresses into this machine's, the same way for
    every service: volume mount points -> directories under `root`, container ports ->
    free ports on 127.0.0.1."""

    def __init__(self, services: dict[str, dict[str, Any]], root: Path) -> None:
        self.mounts: dict[str, Path] = {}
        for service in services.values():
            for volume in service.get("volumes", []):
                name, mount = volume.split(":")[:2]
                assert self.mounts.get(mount, root / name) == root / name, volume
                self.mounts[mount] = root / name
        for directory in self.mounts.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.ports: dict[int, int] = {}
        for service in services.values():
            for token in service.get("command", []):
                for port in CONTAINER_ADDRESS.findall(str(token)):
                    self.ports.setdefault(int(port), free_port())

    def token(self, token: str) -> str:
        for mount, directory in self.mounts.items():
            if token == mount or token.startswith(mount + "/"):
                return str(directory) + token[len(mount) :]
        return CONTAINER_ADDRESS.sub(lambda m: f"127.0.0.1:{self.ports[int(m[1])]}", token)

    def command(self, argv: list[Any]) -> list[str]:
        return [self.token(str(token)) for token in argv]

    def healthcheck(self, test: list[str]) -> list[str]:
        """The healthcheck's CMD with the container's ports mapped and this python."""
        assert test[0] == "CMD", f"only exec-form healthchecks run here: {test}"
        argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
        mapped = []
        for token in argv:
            for inside, outside in self.ports.items():
                token = re.sub(rf"\b{inside}\b", str(outside), token)
            mapped.append(token)
        return mapped


def wait_healthy(name: str, service: dict[str, Any], loopback: Loopback, proc: Proc) -> None:
    """Run the service's healthcheck as compose would, until it passes or its retries end."""
    check = service["healthcheck"]
    argv = loopback.healthcheck(check["test"])
    interval = seconds(check.get("interval", "30s"))
    timeout = seconds(check.get("timeout", "30s"))
    for _ in range(int(check.get("retries", 3))):
        assert proc.popen.poll() is None, f"{name} exited\n{proc.tail()}"
        if subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode == 0:
            return
        time.sleep(interval)
    raise AssertionError(f"{name} never became healthy ({argv})\n{proc.tail()}")


def test_compose_services_run_on_loopback(procs: Procs, tmp_path: Path) -> None:
    services = load_services()
    assert EXIT_SERVICE in services
    loopback = Loopback(services, tmp_path)
    running: dict[str, Proc] = {}
    for name in start_order(services):
        for dependency, condition in conditions(services[name]).items():
            if condition == "service_completed_successfully":
                proc = running[dependency]
                assert proc.wait(timeout=60) == 0, proc.tail()
            elif condition == "service_healthy":
                wait_healthy(dependency, services[dependency], loopback, running[dependency])
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
        running[name] = procs.start(name, loopback.command(services[name]["command"]))

    server = running.pop(EXIT_SERVICE)
    assert server.wait(timeout=120) == 0, server.tail()
    server.wait_for(r"run \d+: completed", timeout=1)
    supernodes = [name for name in services if name.startswith("supernode")]
    # Every round trains on every SuperNode the file starts.
    log = server.output()
    assert log.count(f"received {len(supernodes)} results and 0 failures") == 6, log
    one_shot = {name for name, proc in running.items() if proc.popen.poll() is not None}
    for name in one_shot:
        assert running.pop(name).wait() == 0
    assert terminate_all(list(running.values())) == dict.fromkeys(
        (proc.name for proc in running.values()), 0
    )

    superlink = running["superlink"].output()
    assert "(TLS)" in superlink, superlink
    assert "(insecure" not in superlink
    command = [str(token) for token in services["superlink"]["command"]]
    database = Path(loopback.token(command[command.index("--database") + 1]))
    assert database.is_file(), f"the SuperLink kept no state in {database}"
    assert database.parent in loopback.mounts.values(), "its state is not on a volume"


def copied_paths() -> list[str]:
    """What the Dockerfile's COPY instructions take from the build context."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY":
            arguments = [w for w in words[1:] if not w.startswith("--")]
            sources.extend(arguments[:-1])
    return sources


def workdir() -> str:
    found = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, "the Dockerfile sets no WORKDIR"
    return str(found[-1])


def test_the_image_holds_what_the_commands_use() -> None:
    services = load_services()
    mounts = {
        volume.split(":")[1]
        for service in services.values()
        for volume in service.get("volumes", [])
    }
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    copied = copied_paths()
    assert "pyproject.toml" in copied, "the image installs the project from its pyproject.toml"
    assert workdir() == "/app"
    used: list[str] = []
    for name, service in services.items():
        argv = [str(token) for token in service["command"]]
        assert argv[0] in scripts or argv[0] in {"bash", "python"}, (name, argv[0])
        for token in argv[1:]:
            if any(token == m or token.startswith(m + "/") for m in mounts):
                continue  # a volume, not the image
            if not token.startswith("-") and (ROOT / token).exists():
                used.append(token)
    assert used, "no command uses a file from the repository: nothing checked"
    for path in used:
        assert any(
            Path(path) == Path(source) or Path(source) in Path(path).parents for source in copied
        ), f"{path} is used by a command but the Dockerfile does not COPY it ({copied})"
