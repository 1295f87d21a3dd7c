"""Strategies: how a round samples nodes and aggregates their replies."""

from .aggregate import aggregate, aggregate_inplace, weighted_loss_avg
from .bulyan import Bulyan
from .fedavg import FedAvg
from .fedmedian import FedMedian
from .fedtrimmedavg import FedTrimmedAvg
from .krum import Krum
from .qfedavg import QFedAvg
from .strategy import Strategy

__all__ = [
    "Bulyan",
    "FedAvg",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "QFedAvg",
    "Strategy",
    "aggregate",
    "aggregate_inplace",
    "weighted_loss_avg",
]
