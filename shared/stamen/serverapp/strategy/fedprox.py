"""FedProx, Message API: FedAvg that sends the nodes the weight of a proximal term."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord
from stamen.server.grid import Grid

from .fedavg import FedAvg, MetricsAggrFn

__all__ = ["FedProx"]

logger = logging.getLogger(__name__)


class FedProx(FedAvg):
    r"""Federated optimization with a proximal term (https://arxiv.org/abs/1812.06127).

    The server aggregates as FedAvg and adds "proximal-mu" to every training ConfigRecord;
    each node must add (mu / 2) * ||w - w_global||^2 to its local loss, for example:

    .. code:: python

        mu = msg.content["config"]["proximal-mu"]
        global_params = [p.detach().clone() for p in net.parameters()]  # before training
        ...
        proximal_term = sum((w - g).norm(2) for w, g in zip(net.parameters(), global_params))
        loss = criterion(net(x), y) + (mu / 2) * proximal_term

    Parameters
    ----------
    fraction_train : float (default: 1.0)
        Fraction of the connected nodes sampled for training; at least
        `min_train_nodes` are sampled. 0.0 skips federated training.
    fraction_evaluate : float (default: 1.0)
        Fraction of the connected nodes sampled for evaluation; at least
        `min_evaluate_nodes` are sampled. 0.0 skips federated evaluation.
    min_train_nodes : int (default: 2)
        Minimum number of nodes sampled for training.
    min_evaluate_nodes : int (default: 2)
        Minimum number of nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        Minimum number of connected nodes before a round samples.
    weighted_by_key : str (default: "num-examples")
        The key, in each reply's MetricRecord, of the reply's weight in the averages.
    arrayrecord_key : str (default: "arrays")
        Key of the ArrayRecord in the instructions' RecordDict.
    configrecord_key : str (default: "config")
        Key of the ConfigRecord in the instructions' RecordDict.
    train_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        Aggregates the training replies' metrics; default: a weighted average.
    evaluate_metrics_aggr_fn : Callable[[list[RecordDict], str], MetricRecord], optional
        Aggregates the evaluation replies' metrics; default: a weighted average.
    proximal_mu : float (default: 0.0)
        The weight of the proximal term: 0.0 is FedAvg, larger values keep the nodes'
        models closer to the global one.
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
        proximal_mu: float = 0.0,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.proximal_mu = proximal_mu
        if self.proximal_mu == 0.0:
            logger.warning(
                "FedProx initialized with `proximal_mu=0.0`. "
                "This makes the strategy equivalent to FedAvg."
            )

    def summary(self) -> None:
        """Log the proximal weight, then FedAvg's settings."""
        logger.info("\t├──> FedProx settings:")
        logger.info("\t│\t└── Proximal mu: %s", self.proximal_mu)
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's instructions, with "proximal-mu" in the config."""
        config["proximal-mu"] = self.proximal_mu
        return super().configure_train(server_round, arrays, config, grid)
