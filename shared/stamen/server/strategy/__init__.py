"""Strategies: how a round samples nodes and aggregates their replies.

Keep the lists below sorted, one name a line.
"""

from .aggregate import aggregate, aggregate_inplace, weighted_loss_avg
from .fault_tolerant_fedavg import FaultTolerantFedAvg
from .fedavg import FedAvg
from .fedavgm import FedAvgM
from .fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from .fedprox import FedProx
from .strategy import Strategy

__all__ = [
    "FaultTolerantFedAvg",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedOpt",
    "FedProx",
    "FedYogi",
    "Strategy",
    "aggregate",
    "aggregate_inplace",
    "weighted_loss_avg",
]
