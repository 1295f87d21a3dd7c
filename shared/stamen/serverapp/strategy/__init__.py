"""Message-API strategies: `Strategy.start(grid, initial_arrays, ...)` runs the rounds.

Flower exports no Message-API FedOpt here (its base class lives in `.fedopt`).
Keep the lists below sorted, one name a line.
"""

from .fedavg import FedAvg
from .fedavgm import FedAvgM
from .fedopt import FedAdagrad, FedAdam, FedYogi
from .fedprox import FedProx
from .result import Result
from .strategy import Strategy

__all__ = [
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedProx",
    "FedYogi",
    "Result",
    "Strategy",
]
