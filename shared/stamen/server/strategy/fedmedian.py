"""FedMedian (Yin et al., 2018): the coordinate-wise median of the replies' models."""

from __future__ import annotations

from stamen.common.legacy import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    read_only_ndarrays,
)

from ..client_proxy import ClientProxy
from ._fitmetrics import fit_metrics
from .aggregate import ordered
from .fedavg import FedAvg
from .robust import median

__all__ = ["FedMedian"]


class FedMedian(FedAvg):
    """FedAvg's sampling; the new model is the coordinate-wise median of the replies.

    Paper: https://arxiv.org/abs/1803.01498. Takes FedAvg's arguments (`fraction_fit`,
    `min_fit_clients`, `evaluate_fn`, `accept_failures`, ...). Example counts do not weight
    the median.
    """

    def __repr__(self) -> str:
        return f"FedMedian(accept_failures={self.accept_failures})"

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        results = ordered(results)
        models = [read_only_ndarrays(res.parameters) for _, res in results]
        return ndarrays_to_parameters(median(models)), fit_metrics(self, results)
