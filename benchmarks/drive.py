"""Run one simulation scenario in this process and print its measurements as JSON.

`python -m benchmarks.drive --framework stamen|flower --nodes N --rounds R --fraction F`
The round loop prints the same log lines in both frameworks ("[ROUND k]", "[SUMMARY]"),
so one log handler timestamps the rounds of either.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

STARTED = time.time()


class RoundClock(logging.Handler):
    """Timestamps "[ROUND k]" and "[SUMMARY]" log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "[ROUND " in text or "[SUMMARY]" in text:
            self.marks.append(record.created)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=["stamen", "flower"], required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="0: the framework's default")
    args = parser.parse_args()
    os.environ["BENCH_FRAMEWORK"] = args.framework
    os.environ["BENCH_ROUNDS"] = str(args.rounds)
    os.environ["BENCH_FRACTION"] = str(args.fraction)

    clock = RoundClock()
    for name in ("stamen", "flwr"):
        logging.getLogger(name).addHandler(clock)
        logging.getLogger(name).setLevel(logging.INFO)

    from benchmarks.apps import app

    if args.framework == "flower":
        from flwr.simulation import run_simulation

        backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}
        if args.workers:
            backend["client_resources"]["num_cpus"] = max(1, (os.cpu_count() or 1) // args.workers)
        run_simulation(
            server_app=app.server,
            client_app=app.client,
            num_supernodes=args.nodes,
            backend_config=backend,  # type: ignore[arg-type]
        )
    else:
        from stamen.simulation import run_simulation

        backend_config = {"num_workers": args.workers} if args.workers else {}
        run_simulation(
            server_app=app.server,
            client_app=app.client,
            num_supernodes=args.nodes,
            backend_config=backend_config,
        )
    ended = time.time()
    rounds = [b - a for a, b in zip(clock.marks, clock.marks[1:], strict=False)]
    json.dump(
        {"started": STARTED, "ended": ended, "round_seconds": rounds},
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
