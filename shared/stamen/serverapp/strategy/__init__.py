"""Message-API strategies: `Strategy.start(grid, initial_arrays, ...)` runs the rounds.

Keep the lists below sorted, one name a line.
"""

from .fedavg import FedAvg
from .result import Result
from .strategy import Strategy

__all__ = [
    "FedAvg",
    "Result",
    "Strategy",
]
