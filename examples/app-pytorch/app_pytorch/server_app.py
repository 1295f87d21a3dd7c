"""The ServerApp: FedAvg over the nodes, then the final model saved to disk."""

from __future__ import annotations

import torch
from stamen.app import ArrayRecord, ConfigRecord, Context
from stamen.serverapp import Grid, ServerApp
from stamen.serverapp.strategy import FedAvg

from app_pytorch.task import initial_net

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
        initial_arrays=ArrayRecord(initial_net(int(config.get("seed", 0))).state_dict()),
        train_config=ConfigRecord({"lr": float(config.get("lr", 0.01))}),
        num_rounds=int(config.get("num-server-rounds", 3)),
    )
    save_to = str(config.get("save-to", ""))
    if save_to:
        torch.save(result.arrays.to_torch_state_dict(), save_to)
