"""FedXgbNnAvg (deprecated in Flower): average a network's weights, collect the trees.

Paper: https://arxiv.org/abs/2304.07537. Each FitRes carries, in place of Parameters,
a pair (network Parameters, trees); the aggregate is [averaged network, list of trees].
"""

from __future__ import annotations

import logging
from typing import Any

from stamen.common.legacy import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from ..client_proxy import ClientProxy
from ._fitmetrics import fit_metrics
from .aggregate import aggregate, ordered
from .fedavg import FedAvg

__all__ = ["FedXgbNnAvg"]

logger = logging.getLogger(__name__)


class FedXgbNnAvg(FedAvg):
    """FedAvg over the network half of each reply; the tree halves are passed on as a list.

    Takes FedAvg's arguments. Deprecated in Flower (kept in its baselines as hfedxgboost).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logger.warning(
            "DEPRECATED FEATURE: `FedXgbNnAvg` strategy. This is a deprecated feature. "
            "It will be removed entirely in future versions of Flower."
        )

    def __repr__(self) -> str:
        return f"FedXgbNnAvg(accept_failures={self.accept_failures})"

    def evaluate(
        self, server_round: int, parameters: Any
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, parameters, {})

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Any | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        results = ordered(results)
        pairs: list[Any] = [res.parameters for _, res in results]
        network = aggregate(
            (parameters_to_ndarrays(pair[0]), res.num_examples)
            for pair, (_, res) in zip(pairs, results, strict=True)
        )
        trees = [pair[1] for pair in pairs]
        aggregated: list[Parameters | Any] = [ndarrays_to_parameters(network), trees]
        return aggregated, fit_metrics(self, results)
