"""What the SuperLink's metrics cost on its hot paths: the same calls through the bare
handlers and through the instrumented ones (`--metrics-address` or `--dashboard-address`
on), in one process over the memory transport, so only the wrappers' cost differs.

    python -m benchmarks.telemetry_overhead [--calls 20000] [--repeats 5]

Prints the median microseconds per call for a heartbeat, an empty pull and a push of one
reply, bare and instrumented. Results: benchmarks/OBSERVABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from stamen.superlink.superlink import open_superlink
from stamen.superlink.telemetry import InstrumentedFleet, SuperLinkMetrics
from stamen.transport.api import FleetApi


async def _per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - began) / calls * 1e6


async def measure(calls: int, repeats: int) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}
    async with open_superlink(":memory:", heartbeat_interval=3600) as link:
        instrumented: FleetApi = InstrumentedFleet(link.fleet, SuperLinkMetrics(link))
        node = (await link.fleet.register_node({})).node_id
        run_id = await link.serverappio.create_run("s:app", "c:app", {})
        cases: dict[str, Callable[[FleetApi], Callable[[], Awaitable[object]]]] = {
            "Heartbeat": lambda api: lambda: api.heartbeat(node),
            "PullMessages (none waiting, no wait)": lambda api: (
                lambda: api.pull_messages(node, 0.0)
            ),
            "GetRun": lambda api: lambda: api.get_run(node, run_id),
        }
        for name, make in cases.items():
            bare, counted = [], []
            for _ in range(repeats):  # alternate, so drift hits both alike
                bare.append(await _per_call(make(link.fleet), calls))
                counted.append(await _per_call(make(instrumented), calls))
            results[name] = (statistics.median(bare), statistics.median(counted))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.calls, args.repeats))
    print("| call | bare (µs) | instrumented (µs) | added (µs) |")
    print("|---|---|---|---|")
    for name, (bare, counted) in results.items():
        print(f"| {name} | {bare:.1f} | {counted:.1f} | {counted - bare:+.1f} |")


if __name__ == "__main__":
    main()
