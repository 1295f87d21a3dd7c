"""The ServerApp: FedAvg over the nodes for `num-server-rounds` rounds."""

from __future__ import annotations

from typing import Any

import numpy as np
from stamen.app import ArrayRecord, ConfigRecord, Context
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp.strategy import FedAvg

from app_numpy.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg from a seeded initial model; save the final one to run-config "save-to"."""
    config = context.run_config
    strategy = FedAvg(
        fraction_train=float(config.get("fraction-train", 1.0)),
        min_available_nodes=int(config.get("min-available-nodes", 2)),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model(int(config.get("seed", 0)))),
        train_config=ConfigRecord({"lr": float(config.get("lr", 0.5))}),
        num_rounds=int(config.get("num-server-rounds", 3)),
    )
    save_to = str(config.get("save-to", ""))
    if save_to:
        arrays: dict[str, Any] = {key: array.numpy() for key, array in result.arrays.items()}
        np.savez(save_to, **arrays)
