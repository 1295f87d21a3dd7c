"""The Flower-style workflow end to end, with real processes on loopback.

`stamen new` makes two apps (numpy and scikit-learn); `stamen run` runs one in a local
simulation; then a TLS SuperLink with three SuperNodes that have no app of their own takes
both apps at once (`stamen run` submits their bundles; the SuperLink launches a runner
per run; the nodes fetch each run's bundle), and `ls`, `log --follow`, `stop` and `pull`
work on them. One app carries 20 MiB of data, more than one gRPC message: its bundle
travels in chunks both ways. A third app whose ServerApp does not import shows a failed
run with why.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from procs import Proc, Procs, SuperLink, iter_nodes, superlink_args

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

STEP_TIMEOUT = 180.0
BIG_FILE = 20 << 20
"""Bytes of data in app-b: its bundle is over the 16 MiB a gRPC message may carry."""


def stamen(procs: Procs, *args: str, cwd: Path) -> Proc:
    return procs.start("stamen", ["stamen", *args], cwd=cwd)


def finished(proc: Proc, code: int = 0, timeout: float = STEP_TIMEOUT) -> str:
    assert proc.wait(timeout=timeout) == code, proc.tail()
    return proc.output()


def add_federation(app: Path, control: str, certs: Path) -> None:
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.stamen.federations.tls]\naddress = "{control}"\n'
        + f'root-certificates = "{certs / "ca.crt"}"\n'
    )
    assert "tls" in tomllib.loads(pyproject.read_text())["tool"]["stamen"]["federations"]


def test_new_run_ls_log_stop_pull(procs: Procs, tmp_path: Path, certs: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    finished(stamen(procs, "new", "app-a", "--template", "numpy", cwd=work))
    finished(stamen(procs, "new", "app-b", "--template", "sklearn", cwd=work))
    finished(stamen(procs, "new", "app-c", "--template", "numpy", cwd=work))
    weights = np.random.default_rng(0).bytes(BIG_FILE)  # incompressible: a bundle this big
    (work / "app-b" / "weights.bin").write_bytes(weights)
    broken = work / "app-c" / "app_c" / "server_app.py"
    broken.write_text(broken.read_text() + "\nraise RuntimeError('no server today')\n")

    # 1. As made, the app runs in a local simulation (its default federation).
    output = finished(
        stamen(procs, "run", "app-a", "--run-config", "num-server-rounds=2", cwd=work)
    )
    assert "round  loss" in output

    # 2. A TLS deployment whose SuperNodes have no app of their own.
    link = SuperLink.started(
        procs.start("superlink", superlink_args(certs=certs, database=str(tmp_path / "link.db")))
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
        for partition, config in iter_nodes(3)
    ]
    for node in nodes:
        node.wait_for(r"registered as node")
        assert node.matches(r"no app: serving the app bundle of each run")
    for app in ("app-a", "app-b", "app-c"):
        add_federation(work / app, link.control, certs)

    # 3. Two runs of two apps at once: A runs long (to be stopped), B to its end.
    submitted = finished(
        stamen(procs, "run", "app-a", "tls", "--format", "json",
               "--run-config", "num-server-rounds=100000 min-nodes=3", cwd=work)
    )  # fmt: skip
    run_a = json.loads(submitted.splitlines()[-1])["run-id"]
    streamed = finished(
        stamen(procs, "run", "app-b", "tls", "--stream", "--run-config", "num-server-rounds=2",
               cwd=work)
    )  # fmt: skip
    assert "completed in" in streamed
    listed = json.loads(finished(stamen(procs, "ls", "app-a", "tls", "--format", "json", cwd=work)))
    runs = {run["run-id"]: run for run in listed}
    assert len(runs) == 2
    (run_b,) = set(runs) - {run_a}
    assert runs[run_b]["sub-status"] == "completed"
    assert runs[run_a]["status"] == "running"
    assert runs[run_a]["bundle"] != runs[run_b]["bundle"]
    for node in nodes:  # every node served both apps
        node.wait_for(r"ClientApp app_a\.client_app:app of bundle")
        assert node.matches(r"ClientApp app_b\.client_app:app of bundle")
    cached = tmp_path / "bundles" / runs[run_b]["bundle"] / "weights.bin"
    assert cached.read_bytes() == weights  # the big bundle reached the nodes whole

    # 4. log --follow of a finished run prints it all and exits 0.
    log_b = finished(stamen(procs, "log", str(run_b), "app-b", "tls", "--follow", cwd=work))
    assert "[ROUND 2]" in log_b

    # 5. stop A: it ends as stopped, and following it says so (exit 1).
    stopped = finished(stamen(procs, "stop", str(run_a), "app-a", "tls", cwd=work))
    assert stopped.strip().endswith(f"run {run_a} stopped: stopped by an operator")
    follow_a = stamen(procs, "log", str(run_a), "app-a", "tls", "--follow", cwd=work)
    assert follow_a.wait(timeout=STEP_TIMEOUT) == 1, follow_a.tail()
    assert follow_a.output().splitlines()[-1] == (
        f"stamen: error: run {run_a} stopped: stopped by an operator"
    )

    # 6. pull B: its results, checked.
    out = tmp_path / "results"
    finished(stamen(procs, "pull", str(run_b), "app-b", "tls", "-o", str(out), cwd=work))
    history = json.loads((out / "history.json").read_text())
    assert history
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("round,")
    assert "failures" in rows[0].split(",")
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]
    with np.load(out / "final_arrays.npz") as arrays:
        assert sorted(arrays[name].shape for name in arrays.files) == [(10,), (10, 64)]

    # 7. An app whose ServerApp does not import: the run fails, saying why.
    failing = stamen(procs, "run", "app-c", "tls", "--stream", cwd=work)
    assert failing.wait(timeout=STEP_TIMEOUT) == 1, failing.tail()
    last = failing.output().splitlines()[-1]
    assert last.startswith("stamen: error: run "), last
    assert "failed: the ServerApp runner exited with code 2" in last
    assert "RuntimeError: no server today" in last
