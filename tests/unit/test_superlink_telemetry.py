"""The SuperLink's metrics in-process, in virtual time: error replies by cause, missed
heartbeats, messages and bytes counted by the wrapped APIs; the dashboard's snapshot and
its authorization hook (starlette's TestClient drives the real app)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from pydantic import TypeAdapter, ValidationError
from stamen.common.clock import FakeClock
from stamen.common.fields import HttpAddress
from stamen.common.webserver import http_server, metrics_app
from stamen.superlink.dashboard import dashboard_app, snapshot
from stamen.superlink.telemetry import (
    InstrumentedFleet,
    InstrumentedServerAppIo,
    SuperLinkMetrics,
)
from starlette.requests import Request
from superlink_support import HEARTBEAT, chunks, collect, instruction, make_link, oid, reply


def value(metrics: SuperLinkMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_error_replies_are_counted_by_cause_and_misses_by_node(
    tmp_path: Path, clock: FakeClock
) -> None:
    link = make_link("memory", tmp_path, clock)
    metrics = SuperLinkMetrics(link)
    link.observe(metrics)
    fleet = InstrumentedFleet(link.fleet, metrics)
    io = InstrumentedServerAppIo(link.serverappio, metrics)
    async with link:
        first = (await fleet.register_node({"partition-id": 0})).node_id
        second = (await fleet.register_node({"partition-id": 1})).node_id
        run_id = await io.create_run("server:app", "client:app", {})
        await io.update_run_status(run_id, "running")
        await io.push_messages(run_id, [instruction(run_id, first, ttl=0.5 * HEARTBEAT)])
        await io.push_messages(run_id, [instruction(run_id, second, ttl=60.0)])
        clock.advance(0.6 * HEARTBEAT)
        await fleet.heartbeat(second)
        link.sweep()  # the first instruction expired; both nodes are still online
        assert value(metrics, "stamen_superlink_messages_expired_total") == 1
        assert value(metrics, "stamen_superlink_messages_failed_total") == 0
        clock.advance(3 * HEARTBEAT)
        link.sweep()  # both nodes missed their deadline: the second's instruction fails
        assert value(metrics, "stamen_superlink_heartbeat_misses_total") == 2
        assert value(metrics, "stamen_superlink_messages_failed_total") == 1
        assert value(metrics, "stamen_superlink_nodes_online") == 0
        assert value(metrics, "stamen_superlink_nodes_registered") == 2
        assert value(metrics, "stamen_superlink_runs", status="running") == 1
        assert value(metrics, "stamen_superlink_messages_pushed_total", api="serverappio") == 2


async def test_messages_and_object_bytes_are_counted_both_ways(
    tmp_path: Path, clock: FakeClock
) -> None:
    link = make_link("memory", tmp_path, clock)
    metrics = SuperLinkMetrics(link)
    fleet = InstrumentedFleet(link.fleet, metrics)
    io = InstrumentedServerAppIo(link.serverappio, metrics)
    model, update = b"m" * 1000, b"u" * 300
    async with link:
        node = (await fleet.register_node({"partition-id": 0})).node_id
        run_id = await io.create_run("server:app", "client:app", {"num-server-rounds": 3})
        await io.update_run_status(run_id, "running")
        ins = instruction(run_id, node, objects=[model])
        await io.push_messages(run_id, [ins])
        await io.push_object(run_id, oid(model), len(model), chunks(model))
        (pulled,) = await fleet.pull_messages(node, 0.0)
        assert await collect(fleet.pull_object(node, oid(model))) == model
        answer = reply(pulled, objects=[update])
        await fleet.push_messages(node, [answer])
        await fleet.push_object(node, oid(update), len(update), chunks(update))
        assert len(await io.pull_messages(run_id, [ins.message_id], 0.0)) == 1
        assert await collect(io.pull_object(run_id, oid(update))) == update
        await io.report_round(run_id, 1, 2.5, {"loss/distributed": 0.5})

        assert value(metrics, "stamen_superlink_received_bytes_total") == 1300
        assert value(metrics, "stamen_superlink_sent_bytes_total") == 1300
        for api in ("fleet", "serverappio"):
            assert value(metrics, "stamen_superlink_messages_pushed_total", api=api) == 1
            assert value(metrics, "stamen_superlink_messages_pulled_total", api=api) == 1
        assert value(metrics, "stamen_superlink_round_duration_seconds_sum") == 2.5
        count = "stamen_superlink_rpc_duration_seconds_count"
        assert value(metrics, count, method="Fleet.PullObject") == 1
        assert value(metrics, count, method="ServerAppIo.ReportRound") == 1
        assert metrics.tasks_by_node[node] == 1
        text = generate_latest(metrics.registry).decode()
        assert "# TYPE stamen_superlink_rpc_duration_seconds histogram" in text

        state = snapshot(link, metrics)
        (run,) = state["runs"]
        assert (run["run_id"], run["status"], run["num_rounds"]) == (str(run_id), "running", 3)
        assert run["rounds"] == [{"round": 1, "seconds": 2.5, "metrics": {"loss/distributed": 0.5}}]
        (shown,) = state["nodes"]
        assert shown == {
            "node_id": str(node),
            "online": True,
            "last_heartbeat": clock.time(),
            "node_config": {"partition-id": 0},
            "tasks": 1,
        }


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """GET `url` from a thread (the server runs on this test's event loop)."""

    def fetch() -> tuple[int, str, Any]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers

    return await asyncio.to_thread(fetch)


async def test_the_dashboard_serves_its_page_and_state_and_asks_authorize(
    tmp_path: Path, clock: FakeClock
) -> None:
    link = make_link("memory", tmp_path, clock)
    metrics = SuperLinkMetrics(link)
    asked: list[str] = []

    async def authorize(request: Request) -> bool:
        asked.append(request.url.path)
        return request.headers.get("authorization") == "Bearer operator"

    async with (
        link,
        http_server(dashboard_app(link, metrics), "127.0.0.1:0") as open_address,
        http_server(metrics_app(metrics.registry), "127.0.0.1:0") as metrics_address,
        http_server(dashboard_app(link, metrics, authorize=authorize), "127.0.0.1:0") as guarded,
    ):
        status, page, _ = await get(f"http://{open_address}/")
        assert status == 200
        assert "<title>Stamen SuperLink</title>" in page
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN
        status, body, _ = await get(f"http://{open_address}/api/state")
        assert (status, json.loads(body)["runs"]) == (200, [])
        status, body, _ = await get(f"http://{metrics_address}/metrics")
        assert status == 200
        assert "stamen_superlink_nodes_online 0.0" in body

        status, _, _ = await get(f"http://{guarded}/")  # the page holds no data
        assert status == 200
        status, _, headers = await get(f"http://{guarded}/api/state")
        assert (status, headers["www-authenticate"]) == (401, "Bearer")
        status, _, _ = await get(
            f"http://{guarded}/api/state", headers={"authorization": "Bearer operator"}
        )
        assert status == 200
        assert asked == ["/api/state", "/api/state"]


@pytest.mark.parametrize(
    ("given", "meant"),
    [("9100", "127.0.0.1:9100"), (":9100", "127.0.0.1:9100"), ("0.0.0.0:80", "0.0.0.0:80")],
)
def test_an_http_address_without_host_is_loopback(given: str, meant: str) -> None:
    assert TypeAdapter(HttpAddress).validate_python(given) == meant


def test_a_bad_http_address_is_refused() -> None:
    with pytest.raises(ValidationError, match="HOST:PORT"):
        TypeAdapter(HttpAddress).validate_python("localhost:http")


async def test_a_large_federation_lists_offline_nodes_first_and_counts_all(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stamen.superlink.dashboard as dashboard

    monkeypatch.setattr(dashboard, "MAX_NODES_SHOWN", 1)
    link = make_link("memory", tmp_path, clock)
    metrics = SuperLinkMetrics(link)
    async with link:
        gone = (await link.fleet.register_node({"partition-id": 0})).node_id
        clock.advance(2 * HEARTBEAT)
        kept = (await link.fleet.register_node({"partition-id": 1})).node_id
        clock.advance(1.0 * HEARTBEAT)
        link.sweep()  # the first node is past its deadline, the second is not

        state = snapshot(link, metrics)

    assert (state["nodes_total"], state["nodes_online"]) == (2, 1)
    assert [n["node_id"] for n in state["nodes"]] == [str(gone)]
    assert str(kept) not in json.dumps(state["nodes"])


async def test_with_operator_tokens_the_dashboard_wants_one_too(
    tmp_path: Path, clock: FakeClock
) -> None:
    from stamen.auth.authority import OperatorAuthority
    from stamen.auth.tokens import OperatorTokens, hash_token
    from stamen.superlink.web import dashboard_check

    assert dashboard_check(OperatorAuthority()) is None  # open APIs, open dashboard
    tokens_file = tmp_path / "operators"
    tokens_file.write_text(f"alice:{hash_token('s3cret')}\n")
    authorize = dashboard_check(OperatorAuthority(OperatorTokens.load(tokens_file)))
    link = make_link("memory", tmp_path, clock)
    async with (
        link,
        http_server(
            dashboard_app(link, SuperLinkMetrics(link), authorize=authorize), "127.0.0.1:0"
        ) as address,
    ):
        assert (await get(f"http://{address}/api/state"))[0] == 401
        wrong = {"authorization": "Bearer guess"}
        assert (await get(f"http://{address}/api/state", headers=wrong))[0] == 401
        right = {"authorization": "Bearer s3cret"}
        assert (await get(f"http://{address}/api/state", headers=right))[0] == 200
