"""Prometheus metrics scraped from a real deployment, checked against what happened.

A SuperLink and two SuperNodes with `--metrics-address`, a run of three rounds in which
each node gets a fit and an evaluate instruction per round, then one node killed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from observed_deployment import HEARTBEAT, scrape, start_deployment, start_run, write_app
from procs import Procs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUNDS = 3
NODES = 2
INSTRUCTIONS = ROUNDS * NODES * 2  # a fit and an evaluate per node per round
MODEL_BYTES = 1000 * 8  # the app's model: 1000 float64


def test_metrics_count_what_the_run_did(procs: Procs, tmp_path: Path) -> None:
    deployment = start_deployment(procs, write_app(tmp_path / "app"))
    before = scrape(deployment.metrics)
    assert before["stamen_superlink_nodes_registered"] == NODES
    assert before["stamen_superlink_nodes_online"] == NODES
    assert before['stamen_superlink_runs{status="running"}'] == 0

    server = start_run(procs, deployment, rounds=ROUNDS, fit_sleep=0.5)
    server.wait_for(r"\[ROUND 2\]")
    during = scrape(deployment.metrics)
    assert during['stamen_superlink_runs{status="running"}'] == 1
    assert server.wait(timeout=90) == 0, server.tail()
    deployment.link.proc.wait_for(r"run \d+ finished \(completed\)", timeout=10)

    after = scrape(deployment.metrics)
    assert after['stamen_superlink_runs{status="running"}'] == 0
    assert after['stamen_superlink_runs{status="completed"}'] == 1
    for api in ("serverappio", "fleet"):
        assert after[f'stamen_superlink_messages_pushed_total{{api="{api}"}}'] == INSTRUCTIONS
        assert after[f'stamen_superlink_messages_pulled_total{{api="{api}"}}'] == INSTRUCTIONS
    assert after["stamen_superlink_messages_expired_total"] == 0
    assert after["stamen_superlink_messages_failed_total"] == 0
    assert after["stamen_superlink_round_duration_seconds_count"] == ROUNDS
    assert after["stamen_superlink_round_duration_seconds_sum"] > ROUNDS * 0.5
    # every instruction's model went out to its node; every fit reply's model came in
    assert after["stamen_superlink_sent_bytes_total"] >= INSTRUCTIONS * MODEL_BYTES
    assert after["stamen_superlink_received_bytes_total"] >= ROUNDS * NODES * MODEL_BYTES
    assert (
        after['stamen_superlink_rpc_duration_seconds_count{method="ServerAppIo.ReportRound"}']
        == ROUNDS
    )
    assert after['stamen_superlink_rpc_duration_seconds_count{method="Fleet.PushMessages"}'] >= 1
    for address in deployment.node_metrics:
        node = scrape(address)
        assert node["stamen_supernode_tasks_total"] == INSTRUCTIONS / NODES
        assert node["stamen_supernode_tasks_failed_total"] == 0
        assert node["stamen_supernode_task_duration_seconds_count"] == INSTRUCTIONS / NODES
        assert node["stamen_supernode_worker_restarts_total"] == 0

    deployment.nodes[1].kill()
    deadline = time.monotonic() + 10 * HEARTBEAT
    while scrape(deployment.metrics)["stamen_superlink_nodes_online"] > 1:
        assert time.monotonic() < deadline, "the killed node never went offline"
        time.sleep(HEARTBEAT / 4)
    gone = scrape(deployment.metrics)
    assert gone["stamen_superlink_nodes_registered"] == NODES
    assert gone["stamen_superlink_heartbeat_misses_total"] == 1
    assert deployment.link.proc.terminate() == 0, deployment.link.proc.tail()
