"""Operator tokens with real processes over TLS on loopback.

- A TLS SuperLink without operator credentials does not start: one line, exit code 2.
- With `--auth-operator-tokens`, a run submitted with `stamen run` completes: the CLI
  sends the operator's token (the federation's `operator-token-file`) and the runner the
  SuperLink launches reaches ServerAppIo with the launch token it got in its environment;
  the CLI without a token, or with a wrong one, is refused in one line (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import Proc, Procs, SuperLink, iter_nodes, superlink_args

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

STEP_TIMEOUT = 180.0


def stamen(procs: Procs, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Proc:
    return procs.start("stamen", ["stamen", *args], cwd=cwd, env=env)


def finished(proc: Proc, code: int = 0, timeout: float = STEP_TIMEOUT) -> str:
    assert proc.wait(timeout=timeout) == code, proc.tail()
    return proc.output()


def test_a_tls_superlink_without_operator_credentials_does_not_start(
    procs: Procs, certs: Path
) -> None:
    argv = superlink_args(certs=certs)
    argv.remove("--allow-unauthenticated-operators")
    link = procs.start("superlink", argv)
    assert link.wait(timeout=60) == 2, link.tail()
    [line] = link.output().strip().splitlines()
    assert line == (
        "stamen-superlink: error: with TLS, Control and ServerAppIo require operator "
        "credentials: pass --auth-operator-tokens FILE (`make keys` makes one), or "
        "--allow-unauthenticated-operators for local development"
    )


def test_submitted_runs_complete_with_tokens_and_strangers_are_refused(
    procs: Procs, tmp_path: Path, certs: Path
) -> None:
    keys = tmp_path / "keys"
    work = tmp_path / "work"
    work.mkdir()
    finished(procs.start("keys", ["bash", "scripts/make-keys.sh", str(keys), "1"]))
    link = SuperLink.started(
        procs.start(
            "superlink",
            superlink_args(
                certs=certs,
                database=str(tmp_path / "link.db"),
                extra=["--auth-operator-tokens", str(keys / "operators.txt")],
            ),
        )
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    nodes = [
        procs.start(
            f"supernode-{partition}",
            [
                "stamen-supernode",
                "--dir",
                str(empty),
                "--server",
                link.fleet,
                "--root-certificates",
                str(certs / "ca.crt"),
                "--node-config",
                config,
                "--bundle-cache",
                str(tmp_path / "bundles"),
            ],
        )
        for partition, config in iter_nodes(2)
    ]
    for node in nodes:
        node.wait_for(r"registered as node")
    finished(stamen(procs, "new", "app", "--template", "numpy", cwd=work))
    pyproject = work / "app" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.stamen.federations.tls]\naddress = "{link.control}"\n'
        + f'root-certificates = "{certs / "ca.crt"}"\n'
        + f'operator-token-file = "{keys / "operator.token"}"\n'
    )

    streamed = finished(
        stamen(procs, "run", "app", "tls", "--stream", "--run-config", "num-server-rounds=1",
               cwd=work)
    )  # fmt: skip
    assert "completed in" in streamed
    listed = json.loads(finished(stamen(procs, "ls", "app", "tls", "--format", "json", cwd=work)))
    assert [run["sub-status"] for run in listed] == ["completed"]
    superlink_log = link.proc.output()
    assert "ServerApp runner exited with code 0" in superlink_log
    assert "Bearer" not in superlink_log
    assert keys.joinpath("operator.token").read_text().strip() not in superlink_log

    where = ["--superlink", link.control, "--root-certificates", str(certs / "ca.crt")]
    for env in ({}, {"STAMEN_OPERATOR_TOKEN": "a-guess"}):
        refused = stamen(procs, "ls", *where, cwd=work, env=env)
        assert refused.wait(timeout=STEP_TIMEOUT) == 2, refused.tail()
        [line] = refused.output().strip().splitlines()
        assert line.startswith("stamen: error: ")
        assert "operator token" in line
    token = keys.joinpath("operator.token").read_text().strip()
    by_env = stamen(procs, "ls", *where, cwd=work, env={"STAMEN_OPERATOR_TOKEN": token})
    assert "completed" in finished(by_env)
