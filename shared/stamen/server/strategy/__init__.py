"""Strategies: how a round samples nodes and aggregates their replies."""

from .aggregate import aggregate, aggregate_inplace, weighted_loss_avg
from .fedavg import FedAvg
from .strategy import Strategy

__all__ = ["FedAvg", "Strategy", "aggregate", "aggregate_inplace", "weighted_loss_avg"]
