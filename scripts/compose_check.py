"""`make compose-check`: compose.yaml on a real Docker engine, first clean, then with faults.

Two stacks, each its own compose project, removed with its volumes and network whatever
happens (`down -v`):

1. clean: `up --exit-code-from serverapp`, the README's command: exit code 0, every
   round of the run completed, and the SuperLink required operator tokens (the ServerApp
   got its token from the volume the SuperLink made it on);
2. faults, across containers, in one longer run (rounds slowed by `local-epochs`):
   - `docker kill` a SuperNode while it trains: that round completes with one failure;
   - `docker restart` the SuperLink mid-round: the run goes on;
   - `docker network disconnect` a SuperNode while it trains, `connect` it 20 s later: the
     SuperLink marks it offline, it rejoins, and it serves a round after that;
   then the run completes and the ServerApp exits 0.

The images come first (`make image`, which the Makefile runs before this). Every wait
has a bound, and so has the whole check. Progress goes to stderr; stdout gets one summary
line. Exit codes: 0 all passed, 1 a check failed, 2 no Docker engine or no compose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
IMAGE = os.environ.get("STAMEN_IMAGE", "stamen:dev")
TIME_LIMIT = float(os.environ.get("COMPOSE_CHECK_TIMEOUT", "900"))
"""Seconds the whole check may take."""
CLEAN_ROUNDS = 3
FAULT_ROUNDS = 12
LOCAL_EPOCHS = 1500
"""Makes a round's training last seconds, so a fault lands while nodes train."""
DISCONNECT_SECONDS = 20.0
POLL = 0.25
"""Seconds between looks at the containers' logs."""


class CheckFailed(Exception):
    """A check did not hold; the message says which and what was seen."""


@dataclass
class Deadline:
    """The check's overall bound; each wait takes the smaller of its own and what is left."""

    end: float = field(default_factory=lambda: time.monotonic() + TIME_LIMIT)

    def bound(self, seconds: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise CheckFailed(f"the check ran past its {TIME_LIMIT:g}s limit")
        return min(seconds, left)


DEADLINE = Deadline()


def say(message: str) -> None:
    print(f"compose-check: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, timeout: float = 120, check: bool = True) -> str:
    """Run a command; its stdout and stderr together. CheckFailed when it fails."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=DEADLINE.bound(timeout),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{' '.join(argv)} took more than {exc.timeout:.0f}s") from exc
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise CheckFailed(f"{' '.join(argv)} failed ({done.returncode}): {output.strip()[-600:]}")
    return output


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        try:
            subprocess.run([*argv, "version"], capture_output=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        return argv
    raise SystemExit("compose-check: neither `docker compose` nor `docker-compose` runs")


class Stack:
    """One compose project from compose.yaml: its containers, logs and faults."""

    def __init__(self, compose: list[str], name: str, run_config: str) -> None:
        self.name = name
        self.env = {**os.environ, "STAMEN_IMAGE": IMAGE, "STAMEN_RUN_CONFIG": run_config}
        self.compose = [*compose, "--project-name", name, "--file", str(COMPOSE_FILE)]
        self.returncode = 0
        """The exit code of the last compose command."""
        self._containers: dict[str, str] = {}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        try:
            done = subprocess.run(
                [*self.compose, *args],
                capture_output=True,
                text=True,
                env=self.env,
                cwd=ROOT,
                timeout=DEADLINE.bound(timeout),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            what = f"compose {' '.join(args)}"
            raise CheckFailed(f"{what} took more than {exc.timeout:.0f}s") from exc
        output = done.stdout + done.stderr
        if check and done.returncode != 0:
            what = f"compose {' '.join(args)}"
            raise CheckFailed(f"{what} failed ({done.returncode}): {output[-800:]}")
        self.returncode = done.returncode
        return output

    def container(self, service: str) -> str:
        """The id of the service's container (kept across kill, start and restart)."""
        if service not in self._containers:
            ids = self("ps", "-q", service).split()
            if len(ids) != 1:
                raise CheckFailed(f"expected one {service} container, found {ids}")
            self._containers[service] = ids[0]
        return self._containers[service]

    def logs(self, service: str) -> str:
        """Everything the service's container wrote, across its restarts."""
        return run(["docker", "logs", self.container(service)])

    def wait_log(self, service: str, pattern: str, *, after: int = 0, timeout: float = 120) -> str:
        """Wait until `service` logs a line matching `pattern` past its first `after` lines;
        return the log up to that line."""
        regex = re.compile(pattern)
        end = time.monotonic() + DEADLINE.bound(timeout)
        while True:
            lines = self.logs(service).splitlines()
            for index in range(after, len(lines)):
                if regex.search(lines[index]):
                    return "\n".join(lines[: index + 1])
            if time.monotonic() > end:
                tail = "\n".join(lines[-15:])
                raise CheckFailed(f"{service} never logged /{pattern}/ in {timeout:g}s:\n{tail}")
            time.sleep(POLL)

    def line_count(self, service: str) -> int:
        return len(self.logs(service).splitlines())

    def state(self, service: str) -> tuple[str, int]:
        template = "{{.State.Status}} {{.State.ExitCode}}"
        status, code = run(["docker", "inspect", "-f", template, self.container(service)]).split()
        return status, int(code)

    def wait_exit(self, service: str, timeout: float) -> int:
        end = time.monotonic() + DEADLINE.bound(timeout)
        while (state := self.state(service))[0] not in {"exited", "dead"}:
            if time.monotonic() > end:
                raise CheckFailed(f"{service} still {state[0]} after {timeout:g}s")
            time.sleep(1)
        return state[1]

    def network(self, service: str) -> str:
        names = run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
                self.container(service),
            ]
        ).split()
        if len(names) != 1:
            raise CheckFailed(f"{service} is on networks {names}, expected one")
        return names[0]

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def rounds(log: str) -> dict[int, list[str]]:
    """The ServerApp's log cut at its `[ROUND n]` lines: round -> its lines."""
    cut: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in log.splitlines():
        marker = re.search(r"\[ROUND (\d+)\]", line)
        if marker:
            current = cut.setdefault(int(marker[1]), [])
        elif current is not None:
            current.append(line)
    return cut


def fit_outcome(lines: list[str]) -> tuple[int, int] | None:
    """(results, failures) of a round's training, from its aggregate_fit line."""
    for line in lines:
        found = re.search(r"aggregate_fit: received (\d+) results and (\d+) failures", line)
        if found:
            return int(found[1]), int(found[2])
    return None


def wait_fit(stack: Stack, server_round: int, timeout: float) -> tuple[int, int]:
    """(results, failures) of the round's training, once it has ended."""
    end = time.monotonic() + DEADLINE.bound(timeout)
    while (outcome := fit_outcome(rounds(stack.logs("serverapp")).get(server_round, []))) is None:
        if time.monotonic() > end:
            raise CheckFailed(f"the training of round {server_round} did not end in {timeout:g}s")
        time.sleep(POLL)
    return outcome


def check_completed(stack: Stack, expected_rounds: int, exit_code: int) -> None:
    """The ServerApp exited 0 after every round, and said the run completed."""
    log = stack.logs("serverapp")
    if exit_code != 0:
        raise CheckFailed(f"the ServerApp exited {exit_code}:\n{log[-1500:]}")
    if not re.search(r"run \d+: completed", log):
        raise CheckFailed(f"the ServerApp never logged its run completed:\n{log[-1500:]}")
    if f"Run finished {expected_rounds} rounds" not in log:
        done = sorted(rounds(log))
        raise CheckFailed(f"expected {expected_rounds} rounds, the log shows {done}")


def clean(compose: list[str]) -> str:
    """The README's command, to the end of the run."""
    stack = Stack(
        compose,
        f"stamen-check-clean-{os.getpid()}",
        f"num-server-rounds={CLEAN_ROUNDS} min-available-clients=3",
    )
    started = time.monotonic()
    try:
        stack("up", "--exit-code-from", "serverapp", timeout=300, check=False)
        exit_code = stack.returncode
        server_code = stack.state("serverapp")[1]
        if exit_code != server_code:
            raise CheckFailed(f"`up` returned {exit_code} but the ServerApp exited {server_code}")
        check_completed(stack, CLEAN_ROUNDS, exit_code)
        superlink = stack.logs("superlink")
        if "(TLS)" not in superlink or "(insecure" in superlink:
            raise CheckFailed(f"the SuperLink does not serve over TLS:\n{superlink[-800:]}")
        if "Control and ServerAppIo require an operator token" not in superlink:
            raise CheckFailed(f"the operator APIs are open to anyone:\n{superlink[-800:]}")
    finally:
        stack.down()
    took = time.monotonic() - started
    return f"clean run: {CLEAN_ROUNDS}/{CLEAN_ROUNDS} rounds, exit 0 ({took:.0f}s)"


def node_id(stack: Stack, service: str) -> int:
    """The node id a SuperNode registered last as."""
    found = re.findall(r"registered as node (\d+)", stack.logs(service))
    if not found:
        raise CheckFailed(f"{service} never registered")
    return int(found[-1])


def while_training(stack: Stack, service: str, act: Callable[[], object]) -> tuple[int, str]:
    """Wait for the next round's training to reach `service`, then `act` at once; the
    round it happened in and the id of the message `service` was training on."""
    server_lines = stack.line_count("serverapp")
    service_lines = stack.line_count(service)
    log = stack.wait_log("serverapp", r"configure_fit: strategy sampled", after=server_lines)
    current = max(rounds(log))
    received = stack.wait_log(service, r"received train message", after=service_lines)
    act()
    message = re.findall(r"received train message (\w+)", received)[-1]
    return current, message


def faults(compose: list[str]) -> str:
    stack = Stack(
        compose,
        f"stamen-check-faults-{os.getpid()}",
        f"num-server-rounds={FAULT_ROUNDS} min-available-clients=3 local-epochs={LOCAL_EPOCHS}",
    )
    started = time.monotonic()
    notes = []
    try:
        stack("up", "--detach", timeout=300)
        stack.wait_log("serverapp", r"\[ROUND 1\]")

        # 1. A SuperNode's container dies mid-round: the round ends with one failure.
        victim = "supernode-2"
        killed = node_id(stack, victim)
        killed_in, _ = while_training(
            stack, victim, lambda: run(["docker", "kill", stack.container(victim)])
        )
        say(f"killed {victim} in round {killed_in}")
        outcome = wait_fit(stack, killed_in, timeout=120)
        if outcome[1] != 1:
            raise CheckFailed(
                f"round {killed_in}, {victim} killed: fit got {outcome}, expected 1 failure"
            )
        failure = rf"round {killed_in} fit failure: node {killed}( \([^)]*\))? went offline"
        if not re.search(failure, stack.logs("serverapp")):
            raise CheckFailed(f"round {killed_in}'s failure is not {victim}'s (node {killed})")
        notes.append(f"kill {victim} in round {killed_in}: {outcome[0]} results, 1 failure")
        # Every round waits for all three nodes (min-available-clients=3): start it again.
        if stack.state(victim)[0] != "running":
            run(["docker", "start", stack.container(victim)])

        # 2. The SuperLink's container restarts mid-round: the run goes on.
        superlink_lines = stack.line_count("superlink")
        restarted_in, _ = while_training(
            stack,
            "supernode-0",
            lambda: run(["docker", "restart", "--time", "10", stack.container("superlink")]),
        )
        say(f"restarted the superlink in round {restarted_in}")
        stack.wait_log("superlink", r"SuperLink ready", after=superlink_lines, timeout=60)
        stack.wait_log("serverapp", rf"\[ROUND {restarted_in + 1}\]", timeout=180)
        notes.append(f"superlink restarted in round {restarted_in}")

        # 3. A SuperNode loses the network for 20 s: offline, then back, serving again.
        victim = "supernode-1"
        network = stack.network(victim)
        before = node_id(stack, victim)
        cut_at = 0.0

        def disconnect() -> None:
            nonlocal cut_at
            run(["docker", "network", "disconnect", network, stack.container(victim)])
            cut_at = time.monotonic()

        cut_in, training = while_training(stack, victim, disconnect)
        say(f"disconnected {victim} (node {before}) in round {cut_in} for {DISCONNECT_SECONDS:g}s")
        stack.wait_log("superlink", rf"node {before} went offline", timeout=DISCONNECT_SECONDS)
        time.sleep(max(0.0, cut_at + DISCONNECT_SECONDS - time.monotonic()))
        victim_lines = stack.line_count(victim)
        server_lines = stack.line_count("serverapp")
        run(["docker", "network", "connect", network, stack.container(victim)])
        say(f"reconnected {victim}")
        # A reply to another message than the one it trained on when cut off.
        stack.wait_log(
            victim, rf"replied to train message (?!{training})", after=victim_lines, timeout=120
        )
        log = stack.wait_log(
            "serverapp", r"aggregate_fit: received 3 results and 0 failures", after=server_lines
        )
        served_in = max(rounds(log))
        notes.append(
            f"{victim} offline {DISCONNECT_SECONDS:g}s from round {cut_in}: marked offline, "
            f"rejoined, served round {served_in}"
        )

        exit_code = stack.wait_exit("serverapp", timeout=600)
        check_completed(stack, FAULT_ROUNDS, exit_code)
    finally:
        stack.down()
    notes.append(f"run completed {FAULT_ROUNDS}/{FAULT_ROUNDS} rounds, exit 0")
    return f"faults: {'; '.join(notes)} ({time.monotonic() - started:.0f}s)"


def main() -> int:
    try:
        run(["docker", "info"], timeout=30)
    except (OSError, CheckFailed) as exc:
        print(f"compose-check: no Docker engine ({exc}); start dockerd (README)", file=sys.stderr)
        return 2
    compose = compose_command()
    tool = f"{' '.join(compose)} {run([*compose, 'version', '--short']).strip()}"
    base = run(["docker", "inspect", "-f", '{{index .Config.Labels "org.stamen.base"}}', IMAGE])
    started = time.monotonic()
    parts = [f"{IMAGE} on {base.strip() or 'unknown base'}", tool]
    try:
        say("clean run")
        parts.append(clean(compose))
        say("faults")
        parts.append(faults(compose))
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
        took = time.monotonic() - started
        print(f"compose-check: FAIL after {took:.0f}s: {str(exc).splitlines()[0]}")
        return 1
    print(f"compose-check: PASS in {time.monotonic() - started:.0f}s: {' | '.join(parts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
