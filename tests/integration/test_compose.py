"""compose.yaml cannot drift from the CLIs: its services' commands run here, on loopback.

`make compose-check` runs compose.yaml on a Docker engine; this is the fast check that
needs none. It reads compose.yaml (with `${VAR:-default}` taking its default) and runs
every service's command as a local process with the same flags and files, the way
`docker compose up --exit-code-from serverapp` would: in dependency order (a dependency
that must be healthy passes its own healthcheck), with the repository root as the
working directory (the image's WORKDIR holds the examples and scripts), each named
volume a directory under tmp_path, and each container address (`0.0.0.0:PORT`,
`superlink:PORT`) a free port on 127.0.0.1. The ServerApp must exit 0 (with the operator
token the SuperLink made), the SuperLink must refuse the `stamen` CLI without that token,
and every long-running service must stop cleanly on SIGTERM.

Here every process runs as one user, so the files' owners and modes are checked against
a model of the containers instead: each service runs as its `user:` or the Dockerfile's
USER, files land owned by the user of the service that writes them, and a fresh named
volume takes the owner and mode the Dockerfile gives its mount point. Static checks make
sure the image holds every path the commands use and the build context lets it through.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from procs import BIN, ROOT, Proc, Procs, free_port, terminate_all

pytestmark = pytest.mark.integration

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXIT_SERVICE = "serverapp"
"""The service whose exit ends the deployment (compose.yaml: --exit-code-from serverapp)."""
CONTAINER_ADDRESS = re.compile(r"\b(?:0\.0\.0\.0|superlink):(\d+)\b")
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
PATH_ENV = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
"""A command exec'd by a script (scripts/with-certs.sh) finds this venv's CLIs."""


def interpolate(value: Any) -> Any:
    """compose's `${VAR:-default}`, each variable taking its default."""
    if isinstance(value, str):

        def default(match: re.Match[str]) -> str:
            assert match[2] is not None, f"${{{match[1]}}} has no default: {value!r}"
            return match[2]

        return VARIABLE.sub(default, value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


def load_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = interpolate(yaml.safe_load(COMPOSE.read_text()))[
        "services"
    ]
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
        """The healthcheck's CMD with the container's paths and ports mapped, this python."""
        assert test[0] == "CMD", f"only exec-form healthchecks run here: {test}"
        argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
        mapped = []
        for token in argv:
            token = self.token(token)
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
        command = loopback.command(services[name]["command"])
        running[name] = procs.start(name, command, env=PATH_ENV)

    server = running.pop(EXIT_SERVICE)
    assert server.wait(timeout=120) == 0, server.tail()
    server.wait_for(r"run \d+: completed", timeout=1)
    supernodes = [name for name in services if name.startswith("supernode")]
    # Every round trains on every SuperNode the file starts.
    log = server.output()
    assert log.count(f"received {len(supernodes)} results and 0 failures") == 6, log
    assert_operator_token_required(services, loopback)
    assert terminate_all(list(running.values())) == dict.fromkeys(
        (proc.name for proc in running.values()), 0
    )

    superlink = running["superlink"].output()
    assert "(TLS)" in superlink, superlink
    assert "(insecure" not in superlink
    assert "Control and ServerAppIo require an operator token" in superlink
    command = [str(token) for token in services["superlink"]["command"]]
    database = Path(loopback.token(command[command.index("--database") + 1]))
    assert database.is_file(), f"the SuperLink kept no state in {database}"
    assert database.parent in loopback.mounts.values(), "its state is not on a volume"


def assert_operator_token_required(services: dict[str, dict[str, Any]], loopback: Loopback) -> None:
    """The running SuperLink's Control API refuses the `stamen` CLI without the operator
    token that the ServerApp holds, and answers it with that token."""
    command = [str(token) for token in services["serverapp"]["command"]]
    token_file = loopback.token(command[command.index("--operator-token-file") + 1])
    ca = loopback.token(command[command.index("--root-certificates") + 1])
    control = loopback.token("superlink:9093")
    where = ["--superlink", control, "--root-certificates", ca]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMEN_")}
    listed = [BIN / "stamen", "ls", *where]
    refused = subprocess.run(listed, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2, refused.stderr
    assert "requires an operator token" in refused.stderr
    admitted = subprocess.run(
        [*listed, "--operator-token-file", token_file],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert admitted.returncode == 0, admitted.stderr
    assert "completed" in admitted.stdout


def copied_paths() -> list[str]:
    """What the Dockerfile's COPY instructions take from the build context (not from
    another stage: COPY --from=...)."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY" and not any(w.startswith("--from=") for w in words):
            arguments = [w for w in words[1:] if not w.startswith("--")]
            sources.extend(arguments[:-1])
    return sources


def workdir() -> str:
    found = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, "the Dockerfile sets no WORKDIR"
    return str(found[-1])


def image_user() -> str:
    """The user the image's processes run as: the Dockerfile's last USER."""
    found = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    return str(found[-1]) if found else "root"


def mount_points() -> dict[str, tuple[str, int]]:
    """Directory -> (owner, mode) for what the Dockerfile makes with `install -d`: a fresh
    named volume mounted there takes that owner and mode."""
    made: dict[str, tuple[str, int]] = {}
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for owner, mode, paths in re.findall(
        r"install -d -o (\S+) -g \S+ -m (\d+) ((?:/[\w/.-]+ ?)+)", text
    ):
        for path in paths.split():
            made[path] = (owner, int(mode, 8))
    return made


def context_allows(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last match wins)."""
    allowed = True
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if pattern == "*" or Path(path) == Path(pattern) or Path(pattern) in Path(path).parents:
            allowed = negated
    return allowed


def commands_and_healthchecks(service: dict[str, Any]) -> list[str]:
    tokens = [str(token) for token in service["command"]]
    test = service.get("healthcheck", {}).get("test", [])
    return tokens + [str(token) for token in test[1:]]


def test_the_image_holds_what_the_commands_use() -> None:
    services = load_services()
    mounts = {
        volume.split(":")[1]
        for service in services.values()
        for volume in service.get("volumes", [])
    }
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    copied = copied_paths()
    dockerfile = DOCKERFILE.read_text()
    assert "--no-index" in dockerfile, "the image must install offline, from the wheelhouse"
    assert re.search(r'pip install[^\n]*\\?\n?[^\n]*"stamen', dockerfile), (
        "the image installs the project (its wheel) from the wheelhouse"
    )
    assert workdir() == "/app"
    for source in copied:
        assert context_allows(source), f".dockerignore keeps {source} out of the build context"
    assert not context_allows(".venv"), "the build context would carry the virtualenv"
    used: list[str] = []
    for name, service in services.items():
        argv = commands_and_healthchecks(service)
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


def readable(mode: int, owner: str, user: str) -> bool:
    return bool(mode & (stat.S_IRUSR if user == owner else stat.S_IROTH))


def test_certificate_files_belong_to_the_services_that_read_them(tmp_path: Path) -> None:
    """Run the SuperLink's certificate step as it runs in its container, then check every
    file a command or healthcheck names against the user of the service that reads it:
    readable by that user, private keys by their owner alone and on a volume no other
    service mounts, and every volume writable by the services that mount it writable."""
    services = load_services()
    loopback = Loopback(services, tmp_path)
    made = mount_points()
    user = {name: str(service.get("user", image_user())) for name, service in services.items()}
    owner_of_volume: dict[str, str] = {}
    mounted_by: dict[str, list[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            parts = volume.split(":")
            mount = parts[1]
            mounted_by.setdefault(mount, []).append(name)
            assert mount in made, f"the Dockerfile does not make {mount} (for {name})"
            if "ro" not in parts[2:]:
                assert made[mount][0] == user[name], (
                    f"{name} runs as {user[name]} but writes to {mount}, owned by "
                    f"{made[mount][0]} in the image"
                )
                owner_of_volume[mount] = user[name]

    setup = [n for n, s in services.items() if "scripts/with-certs.sh" in s["command"]]
    assert setup, "no service makes the certificates"
    for name in setup:  # its setup steps (each ends with `--`), then `true` for the service
        argv = loopback.command(services[name]["command"])
        steps = argv[: len(argv) - argv[::-1].index("--")]
        assert "scripts/with-operator-token.sh" in steps, "no service makes the operator token"
        subprocess.run(
            [*steps, "true"],
            check=True,
            capture_output=True,
            timeout=60,
            env={**os.environ, **PATH_ENV},
        )

    checked = 0
    for name, service in services.items():
        for token in commands_and_healthchecks(service):
            mount = next((m for m in mounted_by if token.startswith(m + "/")), None)
            if mount is None:
                continue
            assert name in mounted_by[mount], f"{name} uses {token} but does not mount {mount}"
            path = Path(loopback.token(token))
            owner = owner_of_volume[mount]
            if not path.exists() and owner == user[name]:
                continue  # a file it makes itself (its database)
            assert path.is_file(), f"{name} uses {token}, which nothing writes"
            directory_owner, directory_mode = made[mount]
            assert directory_mode & (
                stat.S_IXUSR if user[name] == directory_owner else stat.S_IXOTH
            ), f"{name} ({user[name]}) cannot enter {mount}"
            mode = path.stat().st_mode
            assert readable(mode, owner, user[name]), (
                f"{name} runs as {user[name]} and cannot read {token} "
                f"(owner {owner}, mode {stat.filemode(mode)})"
            )
            checked += 1
    assert checked, "no command names a file on a volume: nothing checked"

    keys = [
        key
        for directory in loopback.mounts.values()
        for pattern in ("*.key", "*.token")
        for key in directory.glob(pattern)
    ]
    assert {key.suffix for key in keys} == {".key", ".token"}, "no private key or no token"
    for key in keys:
        mode = key.stat().st_mode
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO), f"{key.name} is {stat.filemode(mode)}"
        mount = next(m for m, d in loopback.mounts.items() if d == key.parent)
        readers = {user[name] for name in mounted_by[mount]}
        assert readers == {owner_of_volume[mount]}, (
            f"{key.name} sits on {mount}, mounted by {mounted_by[mount]}"
        )
        assert made[mount][1] & (stat.S_IRWXG | stat.S_IRWXO) == 0, (
            f"{mount} holds private keys but is {oct(made[mount][1])} in the image"
        )
