"""The dashboard: one page, served by the SuperLink (`--dashboard-address`), that shows
runs (status, round progress, each reported metric per round as a line chart) and nodes
(online, last heartbeat, node config, tasks served), updated live without a reload.

The page (`dashboard.html`, with its script and styles inline: nothing is fetched from
elsewhere, so it works offline) polls `GET /api/state`, a JSON snapshot read from the
SuperLink's state on its event loop. The page itself holds no data; `authorize`, when
given, decides each request for the state (operator credentials: the page sends the
token it was opened with, `https://HOST:PORT/#token=...`, as `Authorization: Bearer`);
a refused one gets 401. Over TLS (the SuperLink's certificate) when the SuperLink has it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from stamen.common.node import Node
from stamen.common.run import Run
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .rounds import RoundRecord
from .superlink import SuperLink
from .telemetry import SuperLinkMetrics, run_status

__all__ = ["Authorize", "dashboard_app", "snapshot"]

Authorize = Callable[[Request], Awaitable[bool]]
"""Whether a request may see the dashboard (False: 401)."""

MAX_RUNS_SHOWN = 100
MAX_NODES_SHOWN = 1000
"""The page lists at most this many runs (newest first) and nodes (offline first): it
is fetched every second, and a federation of 10,000 nodes would make it megabytes."""

ROUNDS_KEY = "num-server-rounds"
"""The run config entry that says how many rounds a run will have (Flower's name)."""


def dashboard_app(
    link: SuperLink, metrics: SuperLinkMetrics, *, authorize: Authorize | None = None
) -> Starlette:
    """The dashboard's ASGI app: `/` (the page) and `/api/state` (what it shows)."""
    page = resources.files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")

    async def index(_request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        if authorize is not None and not await authorize(request):
            return Response(
                "operator credentials required\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
                media_type="text/plain",
            )
        return JSONResponse(snapshot(link, metrics), headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/", index), Route("/api/state", state)])


def snapshot(link: SuperLink, metrics: SuperLinkMetrics) -> dict[str, Any]:
    """What the page shows, as JSON-ready data: counts, runs (newest first) and nodes
    (in order of registration)."""
    runs = sorted(link.state.list_runs(), key=lambda run: run.created_at, reverse=True)
    nodes = link.state.list_nodes()
    shown = sorted(nodes, key=lambda node: (node.online, node.registered_at))[:MAX_NODES_SHOWN]
    shown.sort(key=lambda node: node.registered_at)
    return {
        "now": time.time(),
        "heartbeat_interval": link.heartbeat_interval,
        "runs_total": len(runs),
        "nodes_total": len(nodes),
        "nodes_online": sum(node.online for node in nodes),
        "runs": [_run(run, link.rounds.rounds(run.run_id)) for run in runs[:MAX_RUNS_SHOWN]],
        "nodes": [_node(node, metrics.tasks_by_node[node.node_id]) for node in shown],
    }


def _run(run: Run, rounds: list[RoundRecord]) -> dict[str, Any]:
    planned = run.run_config.get(ROUNDS_KEY)
    return {
        "run_id": str(run.run_id),  # 63-bit ids lose digits as JavaScript numbers
        "status": run_status(run),
        "details": run.details,
        "server_app": run.server_app,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "num_rounds": planned if isinstance(planned, int) and planned > 0 else None,
        "rounds": [
            {"round": r.server_round, "seconds": r.seconds, "metrics": dict(r.metrics)}
            for r in rounds
        ],
    }


def _node(node: Node, tasks: int) -> dict[str, Any]:
    return {
        "node_id": str(node.node_id),
        "online": node.online,
        "last_heartbeat": node.last_heartbeat,
        "node_config": dict(node.node_config),
        "tasks": tasks,
    }
